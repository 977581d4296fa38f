package checks

import (
	"reflect"
	"slices"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// uncachedHealth is the devices' health computed from the caches without
// any kept result (the slow path's reference).
func uncachedHealth(w *Watcher, jw *jobWatch, devices []scheduler.DeviceRef) map[string]scheduler.DeviceHealth {
	out := map[string]scheduler.DeviceHealth{}
	for _, d := range devices {
		out[deviceKey(d)] = w.computeHealthLocked(jw, d, nil, nil)
	}
	return out
}

// TestHealthViewMatchesUncached follows a list long enough for a view
// through changes of checks, nodes and allocations: each answer equals
// the health computed without caches, the caller's changes to an answer
// do not reach the next one, and a device without evidence (a check that
// has not run, no checks at all, its node down) never passes the gate.
func TestHealthViewMatchesUncached(t *testing.T) {
	const n = 2 * defaultViewMin
	f := newBenchFleet(t, n)
	w, jw := f.w, f.jw
	gate := scheduler.DefaultGate{}
	check := func(what string) map[string]scheduler.DeviceHealth {
		t.Helper()
		got := w.healthLocked(jw, f.devices)
		if len(jw.views) != 1 {
			t.Fatalf("%s: %d views of one list", what, len(jw.views))
		}
		if want := uncachedHealth(w, jw, f.devices); !reflect.DeepEqual(got, want) {
			for k := range want {
				if !reflect.DeepEqual(got[k], want[k]) {
					t.Errorf("%s: device %s: from the view\n %+v\nuncached\n %+v", what, k, got[k], want[k])
				}
			}
			t.FailNow()
		}
		return got
	}
	passes := func(hs map[string]scheduler.DeviceHealth, d int) bool {
		return gate.Evaluate(f.policy, f.recs[d], hs[f.devices[d].ID], f.now).Status == scheduler.VerdictPass
	}
	w.mu.Lock()
	defer w.mu.Unlock()

	hs := check("first answer")
	for d := range n {
		if !passes(hs, d) {
			t.Fatalf("device %d does not pass at first: %+v", d, hs[f.devices[d].ID])
		}
	}
	// The caller changes its answer: the next one is not affected.
	delete(hs, f.devices[0].ID)
	hs[f.devices[1].ID] = scheduler.DeviceHealth{}
	hs = check("after the caller changed its answer")
	if !passes(hs, 0) || !passes(hs, 1) {
		t.Fatal("the caller's changes reached the next answer")
	}

	// Device 3's serfHealth turns critical, device 5's application check
	// is registered again and has not run yet.
	f.index++
	f.checks[3*3].Status, f.checks[3*3].ModifyIndex = "critical", f.index
	f.checks[3*5+2].Status, f.checks[3*5+2].Output, f.checks[3*5+2].ModifyIndex = "critical", "", f.index
	w.cs.merge(f.checks, f.index)
	hs = check("two checks changed")
	if hs[f.devices[3].ID].Online || passes(hs, 3) || passes(hs, 5) || !passes(hs, 4) {
		t.Fatalf("after the changes: device 3 %+v, device 5 %+v", hs[f.devices[3].ID], hs[f.devices[5].ID])
	}

	// Device 7's checks leave the answer (its agent deregistered): no
	// evidence, no pass.
	f.index++
	answer := slices.Delete(slices.Clone(f.checks), 3*7, 3*7+3)
	w.cs.merge(answer, f.index)
	hs = check("a device without checks")
	if passes(hs, 7) || len(hs[f.devices[7].ID].Checks) != 0 {
		t.Fatalf("device without checks: %+v", hs[f.devices[7].ID])
	}

	// Device 9's node goes down; device 11's allocation fails.
	nodes := slices.Clone(f.nodes)
	nodes[9].Status = "down"
	w.publishNodesLocked(nodes)
	allocs := slices.Clone(f.allocs)
	allocs[11].ClientStatus = "failed"
	w.publishAllocsLocked([]string{jw.id}, allocsAnswer{allocs: allocs})
	hs = check("a node down, an allocation failed")
	if passes(hs, 9) || passes(hs, 11) || hs[f.devices[9].ID].Online || !passes(hs, 10) {
		t.Fatalf("device 9 %+v, device 11 %+v", hs[f.devices[9].ID], hs[f.devices[11].ID])
	}

	// Nothing changed: the same answer again.
	if again := w.healthLocked(jw, f.devices); !reflect.DeepEqual(again, hs) {
		t.Fatal("an answer without changes differs from the previous one")
	}
}

// TestHealthViewShortAndDuplicateLists: a short list and a list naming a
// device twice are answered without a view, and as the uncached path
// answers.
func TestHealthViewShortAndDuplicateLists(t *testing.T) {
	f := newBenchFleet(t, defaultViewMin+10)
	w, jw := f.w, f.jw
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, devs := range [][]scheduler.DeviceRef{
		f.devices[:defaultViewMin-1],
		append(slices.Clone(f.devices), f.devices[0]),
	} {
		got := w.healthLocked(jw, devs)
		if len(jw.views) != 0 {
			t.Fatalf("a list of %d devices has a view", len(devs))
		}
		if want := uncachedHealth(w, jw, devs); !reflect.DeepEqual(got, want) {
			t.Fatalf("a list of %d devices: the answer differs from the uncached one", len(devs))
		}
	}
}
