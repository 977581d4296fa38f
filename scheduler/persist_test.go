package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// killingStore cancels the controller's context right after a state write
// that kill selects: the controller dies with that state persisted.
type killingStore struct {
	*memStore
	kill   func(r *Rollout) bool
	cancel context.CancelFunc
	// killOnActive kills the controller right after it recorded a new
	// active slot; nothing it writes afterwards lands.
	killOnActive bool
	dead         bool
}

var errKilled = errors.New("the controller was killed")

func (s *killingStore) SaveRollout(ctx context.Context, r *Rollout) error {
	if s.dead {
		return errKilled
	}
	err := s.memStore.SaveRollout(ctx, r)
	if err == nil && s.kill != nil && s.kill(r) {
		s.kill = nil
		s.cancel()
	}
	return err
}

func (s *killingStore) SaveDevice(ctx context.Context, app string, d *DeviceRecord) error {
	if s.dead {
		return errKilled
	}
	return s.memStore.SaveDevice(ctx, app, d)
}

func (s *killingStore) SaveDevices(ctx context.Context, app string, recs []*DeviceRecord) (int, error) {
	if s.dead {
		return 0, errKilled
	}
	return s.memStore.SaveDevices(ctx, app, recs)
}

func (s *killingStore) SetActiveSlot(ctx context.Context, app string, a *ActiveSlot) error {
	if s.dead {
		return errKilled
	}
	err := s.memStore.SetActiveSlot(ctx, app, a)
	if err == nil && s.killOnActive {
		s.dead = true
		s.cancel()
	}
	return err
}

// TestRollbackAfterDyingInConfirmRestoresActiveSlot: a controller killed
// between recording the new active slot and saving DONE, then rolled back,
// leaves the active-slot record on the old slot (defect 9: it named the
// candidate's colour, and the next apply deployed to the whole fleet
// ungated).
func TestRollbackAfterDyingInConfirmRestoresActiveSlot(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	ctx, cancel := context.WithCancel(context.Background())
	ctl := h.controller()
	ctl.Store = &killingStore{memStore: h.store, cancel: cancel, killOnActive: true}
	if _, err := ctl.Run(ctx); err == nil {
		t.Fatalf("the first controller was not killed (err %v)", err)
	}
	if a, _ := h.store.ActiveSlot(context.Background(), "edgeinfer"); a.Slot != SlotGreen {
		t.Fatalf("precondition: the killed controller recorded %+v, want the green slot", a)
	}
	h.store.setControls("edgeinfer", func(c *Controls) { c.Rollback = &Request{Actor: "bob@ops"} })
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeRolledBack {
		t.Fatalf("rollback: %v (outcome %q)", err, r.Outcome)
	}
	a, _ := h.store.ActiveSlot(context.Background(), "edgeinfer")
	if a.Slot != SlotBlue || a.Version != "1.0.0" {
		t.Fatalf("after the rollback the active slot is %+v, want blue with 1.0.0", a)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

// TestDegradationVerdictSurvivesRestart checks invariant I7: a controller
// killed after it reached the gradual-degradation verdict (or after it
// extended the soak on the trend) is replaced by one that rolls the
// degrading canary back, not one that passes it.
func TestDegradationVerdictSurvivesRestart(t *testing.T) {
	for name, kill := range map[string]func(r *Rollout) bool{
		"after step=gate": func(r *Rollout) bool { return r.Phase == PhaseCanary && r.Step == StepGate },
		"after the soak extension": func(r *Rollout) bool {
			return len(r.Stages) > 0 && r.Stages[0].Extended && r.Step == StepSoaking
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, 6)
			h.upgradeFrom("1.0.0")
			h.policy.Canary.Soak = 60 * time.Second
			h.health.metrics = func(id string, now time.Time, switched time.Time) *Metrics {
				// Memory leaks 2 MB/s from a 10 MB baseline.
				return &Metrics{MemoryMB: 10 + 2*now.Sub(switched).Seconds(), P95LatencyMS: 5}
			}
			h.health.baseline = &Metrics{MemoryMB: 10, P95LatencyMS: 5}
			ctx, cancel := context.WithCancel(context.Background())
			ctl := h.controller()
			ctl.Store = &killingStore{memStore: h.store, kill: kill, cancel: cancel}
			if r, err := ctl.Run(ctx); err == nil || r.Finished() {
				t.Fatalf("the first controller was not killed (err %v)", err)
			}
			// Only the persisted state is left: a new controller.
			r, err := h.run(context.Background())
			if err != nil {
				t.Fatalf("restarted controller: %v", err)
			}
			if r.Outcome != OutcomeRolledBack || !strings.Contains(r.RollbackReason, "gradual degradation") {
				t.Fatalf("restarted controller ended %q (%s), want a rollback for gradual degradation", r.Outcome, r.RollbackReason)
			}
			h.assertSlots(func(Device) string { return SlotBlue })
		})
	}
}

// TestTrendSamplesAreBounded checks that a long soak keeps at most
// maxTrendSamples per metric, spanning the whole soak.
func TestTrendSamplesAreBounded(t *testing.T) {
	var s TrendSamples
	start := time.Unix(0, 0)
	for i := 0; i < 10*maxTrendSamples; i++ {
		s.add(start.Add(time.Duration(i)*time.Second), &Metrics{MemoryMB: float64(i + 1)})
	}
	if n := len(s.Memory); n > maxTrendSamples || n < maxTrendSamples/2 {
		t.Fatalf("%d samples kept, want between %d and %d", n, maxTrendSamples/2, maxTrendSamples)
	}
	if s.Memory[0].At != start || s.Memory[len(s.Memory)-1].At.Before(start.Add(9*time.Duration(maxTrendSamples)*time.Second)) {
		t.Fatalf("samples span %v..%v, want the whole soak", s.Memory[0].At, s.Memory[len(s.Memory)-1].At)
	}
}

// resumeStored clears a halt the way `fleetplan resume` does: on the
// persisted state, under the lock, with no controller running.
func resumeStored(t *testing.T, h *harness) {
	t.Helper()
	r, err := h.store.Load(context.Background(), h.policy.Name)
	if err != nil || r == nil {
		t.Fatalf("loading the halted run: %v", err)
	}
	Resume(r)
	for _, d := range r.Devices {
		if err := h.store.SaveDevice(context.Background(), r.App, d); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.store.SaveRollout(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// TestResumeAfterOfflineHalts checks defect 8: a rollout halted because
// too many devices were offline, or because its canary reached no device,
// goes on once the devices are back and an operator resumes it (before:
// the VALIDATE halt reused PREPARE's counts and the canary halt re-halted
// forever).
func TestResumeAfterOfflineHalts(t *testing.T) {
	t.Run("validate", func(t *testing.T) {
		h := newHarness(t, 6)
		h.policy.Offline.MaxOfflinePercent = 10
		h.registry.devices[0].Status = StatusOffline
		h.registry.devices[1].Status = StatusOffline
		if _, err := h.run(context.Background()); !errors.Is(err, ErrHalted) {
			t.Fatalf("err = %v, want a halt", err)
		}
		h.registry.devices[0].Status = StatusOK
		h.registry.devices[1].Status = StatusOK
		resumeStored(t, h)
		r, err := h.run(context.Background())
		if err != nil || r.Outcome != OutcomeSucceeded {
			t.Fatalf("resumed run: %v (outcome %q)", err, r.Outcome)
		}
		h.assertSlots(func(Device) string { return SlotBlue })
	})
	t.Run("canary unreachable", func(t *testing.T) {
		h := newHarness(t, 12)
		plan, _ := PlanRollout(h.policy, h.registry.devices)
		for _, d := range plan.Stages[0].Devices {
			h.cluster.offline[d.ID] = true
		}
		r, err := h.run(context.Background())
		if !errors.Is(err, ErrHalted) || r.Stages[0].Verdict != "inconclusive" {
			t.Fatalf("err = %v (canary verdict %q), want a halt with no canary device reached", err, r.Stages[0].Verdict)
		}
		for _, d := range plan.Stages[0].Devices {
			h.cluster.offline[d.ID] = false
		}
		resumeStored(t, h)
		r, err = h.run(context.Background())
		if err != nil || r.Outcome != OutcomeSucceeded {
			t.Fatalf("resumed run: %v (outcome %q)", err, r.Outcome)
		}
		h.assertSlots(func(Device) string { return SlotBlue })
	})
}

// TestLostLockStopsEveryAction checks the controller's half of I8: once
// its fence says the lock is lost, it takes no further cluster action and
// writes nothing.
func TestLostLockStopsEveryAction(t *testing.T) {
	h := newHarness(t, 30)
	h.policy.MaxParallel = 1
	var lost atomic.Bool
	h.cluster.onSwitch = func(n int) {
		if n == 3 {
			lost.Store(true)
		}
	}
	ctl := h.controller()
	ctl.Fence = func() error {
		if lost.Load() {
			return errors.New("session 1234 invalidated")
		}
		return nil
	}
	_, err := ctl.Run(context.Background())
	if !errors.Is(err, ErrLockLost) {
		t.Fatalf("err = %v, want ErrLockLost", err)
	}
	h.cluster.mu.Lock()
	switches := h.cluster.switches
	h.cluster.mu.Unlock()
	if switches != 3 {
		t.Fatalf("%d switches, want none after the lock was lost at the third", switches)
	}
	h.store.mu.Lock()
	idx := h.store.idx
	h.store.mu.Unlock()
	if _, err := ctl.Run(context.Background()); !errors.Is(err, ErrLockLost) {
		t.Fatalf("a second Run without the lock: %v", err)
	}
	h.store.mu.Lock()
	defer h.store.mu.Unlock()
	if h.store.idx != idx {
		t.Errorf("the store was written after the lock was lost")
	}
}
