package scheduler

import (
	"context"
	"errors"
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
