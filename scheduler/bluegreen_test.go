package scheduler

import (
	"context"
	"testing"
)

// TestBlueGreenStandbyReleasedForEveryDevice checks defect 10: a device
// offline when the standby is released at CONFIRM keeps both slots only
// until it returns (catch-up releases it), and a device caught up after
// DONE moves to the candidate alone (before, both kept the old slot
// running beside the new one for good).
func TestBlueGreenStandbyReleasedForEveryDevice(t *testing.T) {
	h := newHarness(t, 12)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
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
}
