package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestControlPlaneErrorsAreNotDeviceFailures checks invariant I5: a Nomad
// 500 on a canary device's switch is retried and the canary goes on; one
// that persists pauses the rollout with the reason, without failing,
// quarantining or rolling back anything; once the control plane is back an
// operator resumes and the rollout completes. (Before, one 500 rolled the
// canary back.)
func TestControlPlaneErrorsAreNotDeviceFailures(t *testing.T) {
	t.Run("transient", func(t *testing.T) {
		h := newHarness(t, 12)
		h.upgradeFrom("1.0.0")
		plan, _ := PlanRollout(h.policy, h.registry.devices)
		victim := plan.Stages[0].Devices[0]
		h.cluster.controlPlane[victim.ID] = 2
		r, err := h.run(context.Background())
		if err != nil || r.Outcome != OutcomeSucceeded {
			t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
		}
		if rec := r.Devices[victim.ID]; rec.State != DeviceHealthy || rec.Failed {
			t.Errorf("device %s is %s (failed %v) after two 500s, want healthy", rec.Name, rec.State, rec.Failed)
		}
		h.assertSlots(func(Device) string { return SlotGreen })
	})
	t.Run("persistent", func(t *testing.T) {
		h := newHarness(t, 12)
		h.upgradeFrom("1.0.0")
		plan, _ := PlanRollout(h.policy, h.registry.devices)
		victim := plan.Stages[0].Devices[0]
		h.cluster.controlPlane[victim.ID] = -1
		r, err := h.run(context.Background())
		var he *HaltError
		if !errors.As(err, &he) || he.Halt.Remedy != RemedyResume {
			t.Fatalf("err = %v, want a halt to resume once the control plane is back", err)
		}
		if r.Finished() || r.Phase != PhaseCanary {
			t.Fatalf("run ended %q in %s, want paused in the canary", r.Outcome, r.Phase)
		}
		for _, rec := range r.Devices {
			if rec.FailedInRun() || rec.State == DeviceRolledBack || rec.State == DeviceQuarantined {
				t.Errorf("device %s is %s: a control-plane error counted against it", rec.Name, rec.State)
			}
		}
		if n := len(h.eventsMatching("decision:rollback", "")); n > 0 {
			t.Errorf("%d rollback decisions for a control-plane error", n)
		}
		h.cluster.mu.Lock()
		h.cluster.controlPlane[victim.ID] = 0
		h.cluster.mu.Unlock()
		resumeStored(t, h)
		r, err = h.run(context.Background())
		if err != nil || r.Outcome != OutcomeSucceeded {
			t.Fatalf("resumed run: %v (outcome %q)", err, r.Outcome)
		}
		h.assertSlots(func(Device) string { return SlotGreen })
	})
}

// TestGateWithoutEvidencePauses checks that a gate whose health cannot be
// read (stale watches) pauses the rollout: no pass, no failure.
func TestGateWithoutEvidencePauses(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	ctl := h.controller()
	ctl.ControlPlaneRetry = 30 * time.Second
	h.cluster.onSwitch = func(int) {
		h.health.mu.Lock()
		h.health.unavailable = true
		h.health.mu.Unlock()
	}
	r, err := ctl.Run(context.Background())
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("err = %v, want a halt", err)
	}
	if st := r.Stages[0]; st.Verdict == "passed" || st.Verdict == "failed" || r.Phase != PhaseCanary {
		t.Fatalf("canary verdict %q in %s without evidence, want none (paused)", st.Verdict, r.Phase)
	}
	for _, rec := range r.Devices {
		if rec.FailedInRun() || rec.State == DeviceHealthy {
			t.Errorf("device %s is %s without evidence", rec.Name, rec.State)
		}
	}
}

// TestOfflineAfterSwitchCounts checks invariant I6 (defect 6): a release
// that knocks the devices it reaches off the network is rolled back, not
// confirmed; offline before a switch stays a skip.
func TestOfflineAfterSwitchCounts(t *testing.T) {
	h := newHarness(t, 30)
	h.upgradeFrom("1.0.0")
	byName := map[string]string{}
	for _, d := range h.registry.devices {
		byName[d.Name] = d.ID
	}
	ctl := h.controller()
	onEvent := ctl.OnEvent
	ctl.OnEvent = func(e Event) {
		if e.Action == "switch" && e.Outcome == "ok" {
			// The new version takes the device off the network.
			h.health.mu.Lock()
			h.health.offline[byName[e.Device]] = true
			h.health.mu.Unlock()
		}
		onEvent(e)
	}
	r, err := ctl.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome == OutcomeSucceeded {
		t.Fatal("a release that took every switched device offline was confirmed")
	}
	if !strings.Contains(r.RollbackReason, "max_offline_after_switch_percent") {
		t.Errorf("rollback reason %q does not name the offline threshold", r.RollbackReason)
	}
	var rb *Decision
	for i := range r.Decisions {
		if r.Decisions[i].Kind == DecisionRollback {
			rb = &r.Decisions[i]
		}
	}
	if rb == nil || rb.Numbers["offline_after_switch"] != float64(r.Stages[0].Devices) {
		t.Errorf("rollback decision %+v, want every one of the %d canary devices counted offline after its switch", rb, r.Stages[0].Devices)
	}
	// The canary never passed: no wave device was switched.
	if n := len(h.eventsMatching("switch", "intent")); n != r.Stages[0].Devices {
		t.Errorf("%d switches, want only the canary's %d", n, r.Stages[0].Devices)
	}
}

// TestOneFailingCheckReadingIsNoVerdict: a check read failing once (the
// application still binding its port after its device's agents were
// frozen) and passing after it ran again is no failure; a check that stays
// critical still fails the device (the fault suite found the first as a
// false rollback, seed 702).
func TestOneFailingCheckReadingIsNoVerdict(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.policy.Health.Application.Interval = 2 * time.Second
	h.policy.Health.Grace = 0 // the failing reading counts at once
	h.health.broken["gateway"] = "flaky"
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q), want a good release confirmed despite one failing reading", err, r.Outcome)
	}
	if n := len(h.eventsMatching("verify", "suspect")); n == 0 {
		t.Errorf("no failing reading was seen (the test does not exercise the confirmation)")
	}
	if n := len(h.eventsMatching("verify", "failed")); n > 0 {
		t.Errorf("%d devices failed on a single failing reading", n)
	}
}
