package registry

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// withPipelineMin runs f with the diff's pipeline threshold set to min.
func withPipelineMin(t *testing.T, min int, f func()) {
	t.Helper()
	old := pipelineMin
	pipelineMin = min
	defer func() { pipelineMin = old }()
	f()
}

// randomScan builds a registry and an observation with every case the diff
// knows: devices up, down and back, capability changes, Consul-only entries
// (merged into a known or a new Nomad node, or gone), re-registered nodes
// (with a quarantine to carry over), devices neither side lists, empty node
// IDs and names, and, when dupIDs, two Nomad nodes claiming one node ID.
func randomScan(rng *rand.Rand, n int, dupIDs bool) (map[string]scheduler.Device, scheduler.Observed) {
	statuses := []scheduler.RegistryStatus{scheduler.StatusOK, scheduler.StatusOffline, scheduler.StatusDiscrepancy, scheduler.StatusQuarantined, ""}
	nomadStatuses := []string{"ready", "ready", "ready", "down", "disconnected", "initializing", ""}
	serf := []string{"passing", "passing", "warning", "critical", ""}
	kernels := []string{"5.15", "5.15", "5.15", "6.1"}
	current := map[string]scheduler.Device{}
	obs := scheduler.Observed{Nomad: map[string]scheduler.NomadNode{}, Consul: map[string]scheduler.ConsulNode{}}
	meta := map[string]string{"fleet": "vision"}
	for i := range n {
		name := fmt.Sprintf("dev-%d", i)
		id := fmt.Sprintf("id-%d", i)
		caps := jetsonCaps
		caps.Kernel = kernels[rng.IntN(len(kernels))]
		if rng.IntN(10) < 8 { // the registry knows it
			st := statuses[rng.IntN(len(statuses))]
			d := scheduler.Device{ID: id, Name: name, Class: []string{"jetson", "rpi"}[rng.IntN(2)], Datacenter: "dc1",
				NomadStatus: nomadStatuses[rng.IntN(len(nomadStatuses))], Eligibility: "eligible", ConsulStatus: serf[rng.IntN(len(serf))],
				Address: "10.0.0.1", Capabilities: caps, Meta: meta, LastHeartbeat: diffBefore.Add(time.Duration(rng.IntN(120)) * time.Minute),
				Status: st, Resolved: st == scheduler.StatusDiscrepancy && rng.IntN(2) == 0}
			if st != scheduler.StatusOK && st != "" {
				d.Reason = "reason " + string(st)
			}
			current[id] = d
		}
		if rng.IntN(12) == 0 { // a Consul-only entry of that name
			ck := scheduler.ConsulOnlyPrefix + name
			current[ck] = scheduler.Device{ID: ck, Name: name, ConsulStatus: "passing", Status: statuses[rng.IntN(len(statuses))], Reason: "consul only"}
		}
		nid := id
		switch rng.IntN(20) {
		case 0:
			nid = fmt.Sprintf("id-%d-new", i) // re-registered
		case 1:
			nid = "" // no ID: keyed by name
		}
		if rng.IntN(10) < 8 { // Nomad lists it
			nn := scheduler.NomadNode{ID: nid, Name: name, Class: "jetson", Datacenter: "dc1", Status: nomadStatuses[rng.IntN(len(nomadStatuses))],
				Eligibility: "eligible", Address: "10.0.0.1", Capabilities: caps, Meta: meta}
			if rng.IntN(3) == 0 {
				nn.LastHeartbeat = diffBefore.Add(time.Duration(rng.IntN(180)) * time.Minute)
			}
			if rng.IntN(15) == 0 {
				nn.Name = "" // the map key names it
			}
			obs.Nomad[name] = nn
		}
		if rng.IntN(10) < 8 { // Consul lists it
			obs.Consul[name] = scheduler.ConsulNode{Name: name, Address: "10.0.0.2", SerfStatus: serf[rng.IntN(len(serf))]}
		}
	}
	for i := range n / 10 { // Consul nodes Nomad never knew
		name := fmt.Sprintf("consul-%d", i)
		obs.Consul[name] = scheduler.ConsulNode{Name: name, SerfStatus: serf[rng.IntN(len(serf))]}
	}
	if dupIDs && len(obs.Nomad) > 2 {
		names := slices.Sorted(maps.Keys(obs.Nomad))
		a, b := obs.Nomad[names[0]], obs.Nomad[names[1]]
		b.ID = a.ID
		obs.Nomad[names[1]] = b
	}
	return current, obs
}

// dupClaimedKeys are the registry keys two or more Nomad nodes claim.
func dupClaimedKeys(obs scheduler.Observed) map[string]struct{} {
	n := map[string]int{}
	for name, nn := range obs.Nomad {
		n[nomadKey(name, &nn)]++
	}
	out := map[string]struct{}{}
	for k, c := range n {
		if c > 1 {
			out[k] = struct{}{}
		}
	}
	return out
}

// withoutDevices is eventStrings without the events of some devices.
func withoutDevices(events []scheduler.RegistryEvent, skip map[string]struct{}) []string {
	var out []scheduler.RegistryEvent
	for _, e := range events {
		if _, ok := skip[e.Device]; !ok {
			out = append(out, e)
		}
	}
	return eventStrings(out)
}

func eventStrings(events []scheduler.RegistryEvent) []string {
	out := make([]string, len(events))
	for i, e := range events {
		out[i] = e.Device + "|" + e.Name + "|" + e.Kind + "|" + e.Detail
	}
	return out
}

// Diff, serial and pipelined, gives exactly what the reference (the
// implementation before the pipeline) gives.
func TestDiffMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	for round := range 300 {
		n := 1 + rng.IntN(60)
		if round%50 == 0 {
			n = 1500 // several chunks of the pipeline
		}
		dup := round%7 == 3
		current, obs := randomScan(rng, n, dup)
		before := maps.Clone(current)
		wantNext, wantEvents, wantOnce := refDiffWith(current, obs, diffNow, nil)
		if !reflect.DeepEqual(before, current) {
			t.Fatalf("round %d: the reference modified current", round)
		}
		for _, min := range []int{1 << 30, 0} {
			withPipelineMin(t, min, func() {
				work := maps.Clone(current)
				next, events, removed, once := diffWith(work, obs, diffNow, nil)
				if len(work) > 0 && !sameMap(next, work) {
					t.Fatalf("round %d (pipeline from %d): next is not current updated in place", round, min)
				}
				var wantRemoved []string
				for k := range current {
					if _, ok := wantNext[k]; !ok {
						wantRemoved = append(wantRemoved, k)
					}
				}
				slices.Sort(wantRemoved)
				if got := slices.Sorted(slices.Values(removed)); !slices.Equal(got, wantRemoved) {
					t.Fatalf("round %d (pipeline from %d): removed %q, want %q", round, min, got, wantRemoved)
				}
				if once != wantOnce {
					t.Fatalf("round %d (pipeline from %d): settled-once %v, want %v", round, min, once, wantOnce)
				}
				got, want := eventStrings(events), eventStrings(wantEvents)
				if !once {
					// Two nodes claim one key: which one is met last is
					// the map's order, in the reference as here, and
					// here the second one is settled from the first
					// one's entry (see Diff): its events may differ;
					// every other device's must not.
					claimed := dupClaimedKeys(obs)
					got, want = withoutDevices(events, claimed), withoutDevices(wantEvents, claimed)
					slices.Sort(got)
					slices.Sort(want)
					if !reflect.DeepEqual(got, want) || !slices.Equal(slices.Sorted(maps.Keys(next)), slices.Sorted(maps.Keys(wantNext))) {
						t.Fatalf("round %d (pipeline from %d): events or keys differ:\n%q\nwant\n%q", round, min, got, want)
					}
					for k, d := range wantNext {
						if _, dup := claimed[k]; !dup && !reflect.DeepEqual(next[k], d) {
							t.Fatalf("round %d (pipeline from %d): %s:\n%+v\nwant\n%+v", round, min, k, next[k], d)
						}
					}
					return
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("round %d (pipeline from %d): events differ:\n%q\nwant\n%q", round, min, got, want)
				}
				if !reflect.DeepEqual(next, wantNext) {
					for k, d := range wantNext {
						if !reflect.DeepEqual(next[k], d) {
							t.Errorf("%s:\n%+v\nwant\n%+v", k, next[k], d)
						}
					}
					t.Fatalf("round %d (pipeline from %d): next differs (%d entries, want %d)", round, min, len(next), len(wantNext))
				}
			})
		}
	}
}

// The scenarios change something: every kind of event occurs (else the
// test above proves little).
func TestRandomScanCoversEveryEvent(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 8))
	seen := map[string]bool{}
	merged, carried := false, false
	for range 100 {
		current, obs := randomScan(rng, 40, false)
		_, events := refDiff(current, obs, diffNow)
		for _, e := range events {
			seen[e.Kind] = true
			merged = merged || strings.HasPrefix(e.Detail, "merged into")
			carried = carried || strings.Contains(e.Detail, "carried over")
		}
	}
	for _, k := range []string{scheduler.EventAdded, scheduler.EventRemoved, scheduler.EventOffline, scheduler.EventOnline,
		scheduler.EventDiscrepancy, scheduler.EventDiscrepancyCleared, scheduler.EventCapabilitiesChanged} {
		if !seen[k] {
			t.Errorf("no %s event in the scenarios", k)
		}
	}
	if !merged || !carried {
		t.Errorf("scenarios lack a merged Consul-only entry (%v) or a carried-over quarantine (%v)", merged, carried)
	}
}

// planSync with the pipelined scan decides what the reference decides.
func TestPlanSyncMatchesReferencePipelined(t *testing.T) {
	withPipelineMin(t, 0, func() { TestPlanSyncMatchesReference(t) })
}

// TestDiff's cases through the pipelined scan.
func TestDiffPipelined(t *testing.T) {
	withPipelineMin(t, 0, func() { TestDiff(t) })
}
