package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// TestRollingBatches: after the canary, a rolling-update plan has stages of
// at most max_parallel devices, covering every device of the waves once,
// each with its wave's soak.
func TestRollingBatches(t *testing.T) {
	p := ctrlPolicy()
	p.Strategy = StrategyRollingUpdate
	p.MaxParallel = 4
	devices := fleet(30)
	ref, err := PlanRollout(&Policy{Name: p.Name, Strategy: StrategyCanaryRolling, MaxParallel: p.MaxParallel, Canary: p.Canary, Waves: p.Waves, Offline: p.Offline}, devices)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Stages[0].Canary || len(plan.Stages[0].Devices) != len(ref.Stages[0].Devices) {
		t.Fatalf("canary changed: %+v", plan.Stages[0])
	}
	seen := map[string]bool{}
	cumulative := 0
	for i, st := range plan.Stages {
		if i > 0 && (len(st.Devices) == 0 || len(st.Devices) > p.MaxParallel) {
			t.Errorf("%s has %d devices, want 1..%d", st.Name, len(st.Devices), p.MaxParallel)
		}
		if i > 0 && !strings.HasPrefix(st.Name, "batch ") {
			t.Errorf("stage %d is named %q", i, st.Name)
		}
		n := 0
		for _, d := range st.Devices {
			if seen[d.ID] {
				t.Errorf("%s appears twice", d.Name)
			}
			seen[d.ID] = true
		}
		for _, c := range st.PerClass {
			n += c
		}
		if n != len(st.Devices) {
			t.Errorf("%s: per-class counts %v, %d devices", st.Name, st.PerClass, len(st.Devices))
		}
		cumulative += len(st.Devices)
		if st.CumulativeDevices != cumulative {
			t.Errorf("%s: cumulative %d, want %d", st.Name, st.CumulativeDevices, cumulative)
		}
		if i > 0 && st.Soak != p.Waves[0].Soak {
			t.Errorf("%s soaks %s, want the wave's %s", st.Name, st.Soak, p.Waves[0].Soak)
		}
	}
	if len(seen) != len(devices) {
		t.Errorf("%d devices planned, want %d", len(seen), len(devices))
	}
	if last := plan.Stages[len(plan.Stages)-1]; last.Percent != 100 {
		t.Errorf("last batch reaches %g%%, want 100", last.Percent)
	}
}

// TestRollingUpdateRun: a good release goes through batch by batch with
// one slot per device (never both), without waiting for an approval; a
// bad one is rolled back to the old slot and the candidate job retired.
func TestRollingUpdateRun(t *testing.T) {
	for _, bad := range []bool{false, true} {
		t.Run(fmt.Sprintf("bad=%v", bad), func(t *testing.T) {
			h := newHarness(t, 12)
			h.policy.Strategy = StrategyRollingUpdate
			h.policy.MaxParallel = 2
			h.policy.Canary.Approval = ApprovalAuto // the decoder's default for rolling-update
			h.policy.Rollback.Scope = ScopeFleet
			h.upgradeFrom("1.0.0")
			if bad {
				h.health.broken["*"] = "unhealthy"
			}
			var mu sync.Mutex
			var both []string
			h.cluster.onSwitch = func(int) {
				for _, d := range h.registry.devices {
					if v := h.cluster.slot(d.ID); strings.Contains(v, ",") {
						mu.Lock()
						both = append(both, d.Name)
						mu.Unlock()
					}
				}
			}
			ctl := h.controller()
			ctl.AutoApprove = false
			r, err := ctl.Run(context.Background())
			if err != nil && !errors.Is(err, ErrHalted) {
				t.Fatalf("run: %v", err)
			}
			if len(both) > 0 {
				t.Errorf("devices ran both slots: %v", both)
			}
			if bad {
				if r.Outcome != OutcomeRolledBack {
					t.Fatalf("outcome %q, want rolled-back", r.Outcome)
				}
				if len(h.cluster.retired) != 1 {
					t.Errorf("retired %v, want the candidate job", h.cluster.retired)
				}
				h.assertSlots(func(Device) string { return SlotBlue })
				return
			}
			if r.Outcome != OutcomeSucceeded {
				t.Fatalf("outcome %q, want succeeded", r.Outcome)
			}
			if len(r.Stages) < 5 {
				t.Errorf("%d stages, want the canary and batches of 2", len(r.Stages))
			}
			if r.Approval == nil || !strings.Contains(r.Approval.Actor, "auto") {
				t.Errorf("approval %+v, want the automatic one", r.Approval)
			}
			h.assertSlots(func(Device) string { return SlotGreen })
		})
	}
}
