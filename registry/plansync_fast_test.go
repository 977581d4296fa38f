package registry

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// planSync decides its writes while the diff settles each device (with
// the decode cache updated in place and maps shared by identity); it must
// decide exactly what deciding from the finished diff decides, sync after
// sync, whatever changed: devices down and back, capabilities, metadata,
// heartbeats within and beyond the resolution, new, removed, Consul-only
// and re-registered nodes, quarantines.
func TestPlanSyncMatchesReference(t *testing.T) {
	testPlanSyncMatchesReference(t, false)
}

// The same when only some writes commit (a lost check-and-set, an error):
// the decode cache, which planSync turned into the next registry, drops
// the entries that did not commit, and the next sync reads them again.
func TestPlanSyncMatchesReferencePartialWrites(t *testing.T) {
	testPlanSyncMatchesReference(t, true)
}

func testPlanSyncMatchesReference(t *testing.T, partial bool) {
	rng := rand.New(rand.NewPCG(11, 12))
	const n = 300
	devs := make([]scheduler.Device, n)
	for i := range devs {
		devs[i] = sampleDevice(i)
	}
	// The registry in KV, as pairs; both sides start from a first sync.
	kv := map[string][]byte{}
	kvIndex := map[string]uint64{}
	index := uint64(1)
	put := func(id string, v []byte) {
		index++
		if v == nil {
			delete(kv, id)
			delete(kvIndex, id)
			return
		}
		kv[id], kvIndex[id] = v, index
	}
	for _, d := range devs {
		v, _ := json.Marshal(d)
		put(d.ID, v)
	}
	pairs := func() consulapi.KVPairs {
		var out consulapi.KVPairs
		for id, v := range kv {
			out = append(out, &consulapi.KVPair{Key: "fleetplan/registry/" + id, Value: v, ModifyIndex: kvIndex[id]})
		}
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return out
	}
	r := &Registry{hbResolution: 5 * time.Minute}
	var cache snapshot
	now := testNow
	for round := range 25 {
		now = now.Add(time.Duration(rng.IntN(400)) * time.Second)
		// Change the cluster.
		for range 20 {
			i := rng.IntN(len(devs))
			d := &devs[i]
			switch rng.IntN(9) {
			case 0:
				d.NomadStatus = []string{"ready", "down", "disconnected"}[rng.IntN(3)]
			case 1:
				d.ConsulStatus = []string{"passing", "critical", ""}[rng.IntN(3)]
			case 2:
				d.Capabilities.Kernel = fmt.Sprintf("6.%d", rng.IntN(3))
			case 3:
				d.Meta = map[string]string{"fleet": []string{"vision", "audio"}[rng.IntN(2)], "fleetplan.app.slot": "blue"}
			case 4:
				d.Apps = map[string]scheduler.AppSlot{"app": {Slot: []string{"blue", "green"}[rng.IntN(2)], Version: "1"}}
			case 5:
				d.ID = fmt.Sprintf("%08d-0000-0000-0000-%012d", i, round+1) // re-registered
			case 6:
				d.Name = fmt.Sprintf("gone-%d-%d", i, round) // a node no side lists any more, a new one
			case 7:
				d.Class = "other"
			case 8:
				id := devs[rng.IntN(len(devs))].ID
				if v, ok := kv[id]; ok {
					var q scheduler.Device
					_ = json.Unmarshal(v, &q)
					q.Status, q.Reason = scheduler.StatusQuarantined, "test"
					v, _ = json.Marshal(q)
					put(id, v)
				}
			}
		}
		obs := observe(devs...)
		for i := range 3 { // Consul-only nodes
			name := fmt.Sprintf("consul-only-%d", (round+i)%5)
			obs.Consul[name] = scheduler.ConsulNode{Name: name, SerfStatus: "passing"}
		}
		for name, nn := range obs.Nomad {
			if rng.IntN(3) == 0 {
				nn.LastHeartbeat = now.Add(-time.Duration(rng.IntN(20)) * time.Minute)
				obs.Nomad[name] = nn
			}
		}

		ps := pairs()
		ref, err := decodeSnapshot("fleetplan/registry/", ps)
		if err != nil {
			t.Fatal(err)
		}
		cache, err = decodeSnapshotCached("fleetplan/registry/", ps, cache)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cache.index, ref.index) || len(cache.devices) != len(ref.devices) {
			t.Fatalf("round %d: the cached snapshot has %d entries, KV %d", round, len(cache.devices), len(ref.devices))
		}
		for k, d := range ref.devices {
			if !equalDevice(cache.devices[k], d) {
				t.Fatalf("round %d: the cached entry %s differs from KV:\n%+v\n%+v", round, k, cache.devices[k], d)
			}
		}
		next, events := Diff(maps.Clone(ref.devices), obs, now)
		want := r.planSyncFrom(ref, next, events)
		got := r.planSync(cache, obs, now)
		if !reflect.DeepEqual(got.ops, want.ops) {
			t.Fatalf("round %d: writes differ: %d, want %d", round, len(got.ops), len(want.ops))
		}
		if !reflect.DeepEqual(got.events, want.events) || !reflect.DeepEqual(got.next, want.next) {
			t.Fatalf("round %d: events or next registry differ", round)
		}
		if len(want.ops) == 0 && round > 0 {
			t.Fatalf("round %d: nothing to write: the scenario changes nothing", round)
		}
		// Apply the writes, as Sync does: up to the first that fails.
		n := len(got.ops)
		if partial {
			n = rng.IntN(n + 1)
		}
		committed := map[string]bool{}
		for _, op := range got.ops[:n] {
			put(op.ID, op.Value)
			committed[op.ID] = true
		}
		cache.forgetUncommitted(got.ops, committed)
	}
}

// equalDevice compares maps by identity first: shared maps are equal, and
// a change of any other field still makes the devices differ.
func TestEqualDeviceSharedMaps(t *testing.T) {
	a := sampleDevice(1)
	b := a // shares Meta and Apps
	if !equalDevice(a, b) || !sameMap(a.Meta, b.Meta) {
		t.Fatal("a device with shared maps differs from itself")
	}
	b.Reason = "x"
	if equalDevice(a, b) {
		t.Fatal("a changed reason is not seen when the maps are shared")
	}
	c := sampleDevice(1) // equal maps, not shared
	if sameMap(a.Meta, c.Meta) || !equalDevice(a, c) {
		t.Fatal("equal maps that are not shared must compare by content")
	}
	c.Meta["fleet"] = "other"
	if equalDevice(a, c) {
		t.Fatal("a changed metadata value is not seen")
	}
	var nilMeta map[string]string
	if !sameMap(nilMeta, map[string]string(nil)) || sameMap(nilMeta, map[string]string{}) {
		t.Fatal("sameMap on nil maps")
	}
}

// Two Nomad nodes claiming one node ID: planSync writes the key once, with
// the entry the next registry holds.
func TestPlanSyncDuplicateNodeID(t *testing.T) {
	r := &Registry{hbResolution: 5 * time.Minute}
	a, b := sampleDevice(1), sampleDevice(2)
	obs := observe(a, b)
	na := obs.Nomad[a.Name]
	na.Class = "other" // both claims change the entry: two writes to merge
	obs.Nomad[a.Name] = na
	nb := obs.Nomad[b.Name]
	nb.ID = a.ID
	nb.Status = "down"
	obs.Nomad[b.Name] = nb
	for _, min := range []int{1 << 30, 0} {
		withPipelineMin(t, min, func() {
			p := r.planSync(snapshotOf(a, b), obs, testNow)
			seen := map[string]bool{}
			for _, op := range p.ops {
				if seen[op.ID] {
					t.Fatalf("pipeline from %d: %s written twice: %+v", min, op.ID, p.ops)
				}
				seen[op.ID] = true
				if op.ID != a.ID {
					continue
				}
				var d scheduler.Device
				if err := json.Unmarshal(op.Value, &d); err != nil || !equalDevice(d, p.next[a.ID]) {
					t.Fatalf("pipeline from %d: wrote %+v (%v), next holds %+v", min, d, err, p.next[a.ID])
				}
			}
			if !seen[a.ID] || !seen[b.ID] {
				t.Fatalf("pipeline from %d: writes %+v, want %s (claimed twice) and %s (gone from Nomad)", min, p.ops, a.ID, b.ID)
			}
		})
	}
}
