package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// TestRollbackIsVerified checks invariant I2: rolled-back devices carry the
// time their old slot was verified healthy, and the decision the measured
// restore times.
func TestRollbackIsVerified(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.health.broken["*"] = "crash"
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %q, want rolled-back", r.Outcome)
	}
	for _, rec := range r.StageDevices(0) {
		if rec.State != DeviceRolledBack || rec.RollbackAt.IsZero() || rec.RestoredAt.Before(rec.RollbackAt) {
			t.Errorf("canary device %s: %s, rollback at %v, restored at %v; want rolled-back with a verified restore", rec.Name, rec.State, rec.RollbackAt, rec.RestoredAt)
		}
	}
	d := r.Decisions[len(r.Decisions)-1]
	if d.Kind != DecisionRolledBack || d.Numbers["verified_devices"] != float64(r.Stages[0].Devices) {
		t.Errorf("last decision %+v, want rolled-back with every canary device verified", d)
	}
	if got := len(h.eventsMatching("rollback-verify", "ok")); got != r.Stages[0].Devices {
		t.Errorf("%d verified rollback events, want %d", got, r.Stages[0].Devices)
	}
}

// TestRollbackThatCannotBeVerified checks that a rollback whose old
// version does not come back healthy ends as rollback-incomplete, naming
// the devices, and that catch-up finishes it once they are healthy.
func TestRollbackThatCannotBeVerified(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.health.broken["*"] = "unhealthy"
	// Once the canary switched, the old version is broken on the devices
	// too (before, the pre-flight checklist would stop the rollout).
	h.cluster.onSwitch = func(int) {
		h.health.mu.Lock()
		h.health.oldBroken = true
		h.health.mu.Unlock()
	}
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRollbackIncomplete {
		t.Fatalf("outcome %q, want rollback-incomplete", r.Outcome)
	}
	d := r.Decisions[len(r.Decisions)-1]
	if d.Kind != DecisionRollbackIncomplete {
		t.Fatalf("last decision %+v, want rollback-incomplete", d)
	}
	for _, rec := range r.StageDevices(0) {
		if rec.State == DeviceRolledBack {
			t.Errorf("device %s reported rolled-back though its old slot never passed", rec.Name)
		}
		if !strings.Contains(d.Reason, rec.Name) {
			t.Errorf("decision %q does not name %s", d.Reason, rec.Name)
		}
	}
	for _, e := range h.eventsMatching("decision:rolled-back", "") {
		t.Errorf("a rolled-back decision was emitted: %+v", e)
	}
	// The old version recovers: catch-up verifies the devices and the run
	// becomes rolled-back.
	h.cluster.mu.Lock()
	h.cluster.onSwitch = nil
	h.cluster.mu.Unlock()
	h.health.mu.Lock()
	h.health.oldBroken = false
	h.health.mu.Unlock()
	r, err = h.controller().CatchUp(context.Background(), false)
	if err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("after catch-up the outcome is %q, want rolled-back", r.Outcome)
	}
	for _, rec := range r.StageDevices(0) {
		if rec.State != DeviceRolledBack || rec.RestoredAt.IsZero() {
			t.Errorf("device %s is %s after catch-up", rec.Name, rec.State)
		}
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

// A device whose switch back fails on its own (its client took the
// metadata, the server never showed it) does not stop the rollback: every
// other device is taken back and verified, the run ends
// rollback-incomplete naming that device, and catch-up finishes it.
func TestRollbackGoesOnPastADeviceThatFails(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.health.broken["*"] = "crash"
	var mu sync.Mutex
	calls := map[string]int{}
	target := ""
	h.cluster.beforeSwitch = func(id string) {
		mu.Lock()
		defer mu.Unlock()
		calls[id]++
		if target == "" {
			target = id // the first device switched
		}
		if id == target && calls[id] == 2 { // its switch back
			h.cluster.mu.Lock()
			h.cluster.failOnce[id] = errors.New("waiting for the Nomad server to report slot blue: not reported within 1m0s")
			h.cluster.mu.Unlock()
		}
	}
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRollbackIncomplete {
		t.Fatalf("outcome %q, want rollback-incomplete", r.Outcome)
	}
	d := r.Decisions[len(r.Decisions)-1]
	var failed *DeviceRecord
	for _, rec := range r.StageDevices(0) {
		if rec.ID == target {
			failed = rec
			continue
		}
		if rec.State != DeviceRolledBack {
			t.Errorf("device %s is %s: the rollback must go on past another device's failure", rec.Name, rec.State)
		}
	}
	if failed == nil {
		t.Fatal("the failing device is not in the canary")
	}
	if failed.State == DeviceRolledBack || !strings.Contains(failed.Reason, "not reported") || !strings.Contains(d.Reason, failed.Name) {
		t.Fatalf("failing device %s: %s (%q); decision %q: want it unverified and named", failed.Name, failed.State, failed.Reason, d.Reason)
	}
	// The device's trouble clears: catch-up takes it back and verifies it.
	h.cluster.mu.Lock()
	h.cluster.beforeSwitch = nil
	h.cluster.mu.Unlock()
	r, err = h.controller().CatchUp(context.Background(), false)
	if err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("after catch-up the outcome is %q, want rolled-back", r.Outcome)
	}
}
