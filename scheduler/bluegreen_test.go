package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeTraffic is the fake cluster's traffic switch and node capacity (kept
// beside the fake, keyed by it, so that every harness has one).
type fakeTraffic struct {
	mu   sync.Mutex
	live map[string]string // device ID -> live slot
	// log records routes and switches in order: "route <id> <slot>",
	// "switch <id> <value>".
	log []string
	// violations are moments a device's traffic pointed at a slot it did
	// not run (a route to a slot without an instance, or a switch that
	// stopped the live slot).
	violations []string
	// short: devices of these classes lack room for two slots.
	short map[string]bool
}

var fakeTraffics sync.Map // *fakeCluster -> *fakeTraffic

func (f *fakeCluster) traffic() *fakeTraffic {
	v, _ := fakeTraffics.LoadOrStore(f, &fakeTraffic{live: map[string]string{}, short: map[string]bool{}})
	return v.(*fakeTraffic)
}

func (f *fakeCluster) RouteTraffic(ctx context.Context, r *Rollout, dev DeviceRef, slot string) error {
	t := f.traffic()
	cur := f.slot(dev.ID)
	t.mu.Lock()
	defer t.mu.Unlock()
	if slot != "" && !SlotHolds(cur, slot) {
		t.violations = append(t.violations, fmt.Sprintf("%s: traffic routed to slot %s while it runs %q", dev.Name, slot, cur))
	}
	t.live[dev.ID] = slot
	t.log = append(t.log, "route "+dev.ID+" "+slot)
	return nil
}

func (f *fakeCluster) SlotCapacity(ctx context.Context, devices []DeviceRef) (*Capacity, error) {
	t := f.traffic()
	t.mu.Lock()
	defer t.mu.Unlock()
	c := &Capacity{PerClass: map[string]Resources{}, Room: map[string]Resources{}}
	for _, d := range devices {
		c.PerClass[d.Class] = Resources{CPUMHz: 200, MemoryMB: 256}
		c.Room[d.ID] = Resources{CPUMHz: 1000, MemoryMB: 1024}
		if t.short[d.Class] {
			c.Room[d.ID] = Resources{CPUMHz: 300, MemoryMB: 1024}
		}
	}
	return c, nil
}

// watchTraffic records every switch and checks after it that no device's
// traffic points at a slot it stopped.
func watchTraffic(h *harness) *fakeTraffic {
	t := h.cluster.traffic()
	prev := h.cluster.onSwitch
	h.cluster.onSwitch = func(n int) {
		t.mu.Lock()
		for _, d := range h.registry.devices {
			v := h.cluster.slot(d.ID)
			if live := t.live[d.ID]; live != "" && !SlotHolds(v, live) {
				t.violations = append(t.violations, fmt.Sprintf("%s: slot value %q dropped its live slot %s", d.Name, v, live))
			}
		}
		t.mu.Unlock()
		if prev != nil {
			prev(n)
		}
	}
	h.cluster.beforeSwitch = func(id string) {
		t.mu.Lock()
		t.log = append(t.log, "switch "+id)
		t.mu.Unlock()
	}
	return t
}

func (t *fakeTraffic) assertClean(tb testing.TB) {
	tb.Helper()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, v := range t.violations {
		tb.Error(v)
	}
}

func (t *fakeTraffic) liveOf(id string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live[id]
}

// TestBlueGreenStandbyReleasedForEveryDevice checks defect 10: a device
// offline when the standby is released at CONFIRM keeps both slots only
// until it returns (catch-up releases it), and a device caught up after
// DONE moves to the candidate alone (before, both kept the old slot
// running beside the new one for good). The traffic of both ends on the
// candidate, never on a stopped slot.
func TestBlueGreenStandbyReleasedForEveryDevice(t *testing.T) {
	h := newHarness(t, 12)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
	tr := watchTraffic(h)
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	atRelease := plan.Stages[1].Devices[0] // goes offline as its standby is released
	late := plan.Stages[2].Devices[0]      // offline for its whole stage
	h.cluster.offline[late.ID] = true
	h.health.offline[late.ID] = true
	ctl := h.controller()
	onEvent := ctl.OnEvent
	ctl.OnEvent = func(e Event) {
		if e.Action == "release-standby" && e.Outcome == "intent" && e.Device == atRelease.Name {
			h.cluster.mu.Lock()
			h.cluster.offline[atRelease.ID] = true
			h.cluster.mu.Unlock()
		}
		onEvent(e)
	}
	r, err := ctl.Run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
	}
	if rec := r.Devices[atRelease.ID]; !rec.StandbyHeld || h.cluster.slot(atRelease.ID) != "blue,green" {
		t.Fatalf("device offline at release: standby held %v, slot %q; want both slots, held for catch-up", rec.StandbyHeld, h.cluster.slot(atRelease.ID))
	}
	if got := tr.liveOf(atRelease.ID); got != SlotGreen {
		t.Errorf("device offline at release: traffic on %q, want green (the live entry does not need the device)", got)
	}
	if got := tr.liveOf(late.ID); got == SlotGreen {
		t.Errorf("device never switched has its traffic on the candidate")
	}
	// Both come back: catch-up releases the standby of one and switches
	// the other to the candidate alone.
	h.cluster.mu.Lock()
	h.cluster.offline[atRelease.ID], h.cluster.offline[late.ID] = false, false
	h.cluster.mu.Unlock()
	h.health.mu.Lock()
	h.health.offline[late.ID] = false
	h.health.mu.Unlock()
	r, err = h.controller().CatchUp(context.Background(), true)
	if err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	if rec := r.Devices[atRelease.ID]; rec.StandbyHeld {
		t.Errorf("standby of %s still held after catch-up", rec.Name)
	}
	if rec := r.Devices[late.ID]; rec.State != DeviceCaughtUp {
		t.Errorf("late device %s is %s, want caught-up", rec.Name, rec.State)
	}
	h.assertSlots(func(Device) string { return SlotGreen })
	for _, d := range h.registry.devices {
		if got := tr.liveOf(d.ID); got != SlotGreen {
			t.Errorf("device %s: traffic on %q after catch-up, want green", d.Name, got)
		}
	}
	tr.assertClean(t)
}

// TestBlueGreenTrafficFollowsHealthyCandidate: the traffic of a device
// moves to the candidate only once it passed its checks, after its switch,
// and every device ends with its traffic on the candidate alone.
func TestBlueGreenTrafficFollowsHealthyCandidate(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
	tr := watchTraffic(h)
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
	}
	tr.mu.Lock()
	log := append([]string(nil), tr.log...)
	tr.mu.Unlock()
	for _, d := range h.registry.devices {
		var order []string
		for _, l := range log {
			if strings.Contains(l, " "+d.ID) {
				order = append(order, strings.Replace(l, " "+d.ID, "", 1))
			}
		}
		// route to blue (before the switch), switch to both, route to
		// green (once healthy), switch to green alone (standby release).
		want := []string{"route blue", "switch", "route green", "switch"}
		if strings.Join(order, "|") != strings.Join(want, "|") {
			t.Errorf("device %s: %v, want %v", d.Name, order, want)
		}
		if got := r.Devices[d.ID].Live; got != SlotGreen {
			t.Errorf("device %s: recorded live slot %q, want green", d.Name, got)
		}
	}
	tr.assertClean(t)
	h.assertSlots(func(Device) string { return SlotGreen })
}

// TestBlueGreenRollbackTrafficBackFirst: a failing candidate never gets
// the traffic; a rollback decided after some devices took the traffic
// moves it back before any candidate is stopped, and measures both.
func TestBlueGreenRollbackTrafficBackFirst(t *testing.T) {
	h := newHarness(t, 12)
	h.policy.Strategy = StrategyBlueGreen
	h.policy.Rollback.Scope = ScopeFleet
	h.upgradeFrom("1.0.0")
	tr := watchTraffic(h)
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	bad := plan.Stages[1].Devices[0]
	h.health.broken[bad.ID] = "unhealthy"
	r, err := h.run(context.Background())
	if err != nil && !errors.Is(err, ErrHalted) {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %q, want rolled-back", r.Outcome)
	}
	if r.Devices[bad.ID].Live == SlotGreen {
		t.Errorf("the failing device %s got the traffic", bad.Name)
	}
	tr.mu.Lock()
	log := append([]string(nil), tr.log...)
	tr.mu.Unlock()
	// Replay the log: a route back is a route to blue of a device whose
	// traffic was on green.
	firstBack, lastBack, firstStop := -1, -1, -1
	live := map[string]string{}
	for i, l := range log {
		f := strings.Fields(l)
		switch {
		case f[0] == "route" && len(f) == 3:
			if live[f[1]] == SlotGreen && f[2] == SlotBlue {
				if firstBack < 0 {
					firstBack = i
				}
				lastBack = i
			}
			live[f[1]] = f[2]
		case f[0] == "switch" && firstBack >= 0 && firstStop < 0:
			firstStop = i
		}
	}
	if firstBack < 0 || firstStop < 0 || lastBack > firstStop {
		t.Fatalf("traffic back at %d..%d, first candidate stop at %d; want every route back before the first stop: %v", firstBack, lastBack, firstStop, log)
	}
	rt := r.RollbackTimes
	if rt == nil || rt.TrafficBackAt.IsZero() || rt.CandidateStoppedAt.IsZero() {
		t.Fatalf("rollback times not recorded: %+v", rt)
	}
	if rt.TrafficBack() > rt.CandidateStopped() || rt.TrafficBack() < 0 {
		t.Errorf("traffic back after %s, candidate stopped after %s: want traffic first", rt.TrafficBack(), rt.CandidateStopped())
	}
	for _, d := range h.registry.devices {
		if got := tr.liveOf(d.ID); got != "" && got != SlotBlue {
			t.Errorf("device %s: traffic on %q after the rollback, want blue", d.Name, got)
		}
	}
	h.assertSlots(func(Device) string { return SlotBlue })
	tr.assertClean(t)
}

// TestBlueGreenChecklistRefusesWithoutRoom: a class whose devices lack
// room for two slots stops the rollout before anything is registered.
func TestBlueGreenChecklistRefusesWithoutRoom(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
	short := h.registry.devices[0].Class
	h.cluster.traffic().short[short] = true
	r, err := h.run(context.Background())
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("run: %v, want a halt", err)
	}
	if len(h.cluster.prepared) != 0 {
		t.Errorf("candidate registered despite the checklist: %v", h.cluster.prepared)
	}
	if r.Halt == nil || !strings.Contains(r.Halt.Reason, CheckCapacity) || !strings.Contains(r.Halt.Reason, short) {
		t.Errorf("halt %+v does not name the capacity item and class %s", r.Halt, short)
	}
}

func TestBuildStrategyChecklist(t *testing.T) {
	p := &Policy{Strategy: StrategyBlueGreen}
	plan := &Plan{Stages: []PlannedStage{{Devices: []PlannedDevice{{ID: "a", Name: "cam-1", Class: "cpu"}, {ID: "b", Name: "gpu-1", Class: "gpu"}}}}}
	c := &Capacity{
		PerClass: map[string]Resources{"cpu": {CPUMHz: 100, MemoryMB: 128}, "gpu": {CPUMHz: 100, MemoryMB: 128}},
		Room:     map[string]Resources{"a": {CPUMHz: 200, MemoryMB: 256}, "b": {CPUMHz: 199, MemoryMB: 4096}},
	}
	cl := BuildStrategyChecklist(p, plan, true, c, nil)
	if len(cl) != 2 || !cl[0].OK || cl[1].OK {
		t.Fatalf("checklist %+v: want the traffic item checked, capacity unchecked", cl)
	}
	if !strings.Contains(cl[1].Detail, "gpu-1") || strings.Contains(cl[1].Detail, "cam-1 (room") || !strings.Contains(cl[1].Fix, "gpu") {
		t.Errorf("capacity item %+v: want gpu-1 named as lacking room, cam-1 not", cl[1])
	}
	cl = BuildStrategyChecklist(p, plan, false, nil, errors.New("timeout"))
	if len(cl) != 2 || cl[0].OK || cl[1].OK {
		t.Errorf("no router, no capacity: %+v, want both unchecked", cl)
	}
	if cl := BuildStrategyChecklist(&Policy{Strategy: StrategyRollingUpdate}, plan, false, nil, nil); cl != nil {
		t.Errorf("rolling-update has no blue-green items: %+v", cl)
	}
}

var _ = time.Second
