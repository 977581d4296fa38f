package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestControllerFirstInstallThenUpgrade(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Release.Version = "1.0.0"
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("first install: %v", err)
	}
	if r.Outcome != OutcomeSucceeded || r.Phase != PhaseDone {
		t.Fatalf("first install ended %s/%s, want succeeded/DONE", r.Outcome, r.Phase)
	}
	if r.Candidate != SlotBlue || r.Active != "" {
		t.Fatalf("first install: candidate %q active %q, want blue and none", r.Candidate, r.Active)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
	if a, _ := h.store.ActiveSlot(context.Background(), "edgeinfer"); a == nil || a.Slot != SlotBlue || a.Version != "1.0.0" {
		t.Fatalf("active slot after install = %+v, want blue 1.0.0", a)
	}
	// Canary of 5% on 6 devices still covers every class.
	classes := map[string]bool{}
	for _, rec := range r.Devices {
		if rec.Stage == 0 {
			classes[rec.Class] = true
		}
		if rec.State != DeviceHealthy {
			t.Errorf("device %s ended %s, want healthy", rec.Name, rec.State)
		}
	}
	if len(classes) != 3 {
		t.Errorf("canary covered classes %v, want all 3", classes)
	}
	if r.Approval == nil || !strings.Contains(r.Approval.Actor, "auto-approve") || !strings.Contains(r.Approval.Saw, "3/3 canary devices healthy") {
		t.Errorf("approval = %+v, want an auto-approval that saw 3/3 healthy", r.Approval)
	}

	// Upgrade: the other colour receives 2.0.0, the old slot is never
	// prepared again.
	h.policy.Release.Version = "2.0.0"
	r, err = h.run(context.Background())
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	if r.Candidate != SlotGreen || r.Active != SlotBlue || r.PreviousVersion != "1.0.0" {
		t.Fatalf("upgrade: candidate %q active %q previous %q", r.Candidate, r.Active, r.PreviousVersion)
	}
	h.assertSlots(func(Device) string { return SlotGreen })
	if got := strings.Join(h.cluster.prepared, ","); got != "edgeinfer-blue@1.0.0,edgeinfer-green@2.0.0" {
		t.Errorf("prepared slot jobs %s", got)
	}
	if len(h.store.history["edgeinfer"]) != 1 {
		t.Errorf("history has %d runs, want the first install archived", len(h.store.history["edgeinfer"]))
	}
	// The same version again is nothing to do.
	if _, err := h.run(context.Background()); !errors.Is(err, ErrNothingToDo) {
		t.Errorf("re-applying 2.0.0: err = %v, want ErrNothingToDo", err)
	}
}

func TestControllerCanaryCrashRollsBack(t *testing.T) {
	for _, mode := range []string{"crash", "unhealthy"} {
		t.Run(mode, func(t *testing.T) {
			h := newHarness(t, 12)
			h.store.active["edgeinfer"] = &ActiveSlot{Slot: SlotBlue, Version: "1.0.0", Index: 1}
			for _, d := range h.registry.devices {
				h.cluster.slots[d.ID] = SlotBlue
			}
			h.health.broken["*"] = mode
			r, err := h.run(context.Background())
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if r.Outcome != OutcomeRolledBack || r.Phase != PhasePrepare {
				t.Fatalf("ended %s/%s, want rolled-back/PREPARE", r.Outcome, r.Phase)
			}
			h.assertSlots(func(Device) string { return SlotBlue })
			// Only the canary was ever switched.
			if got := len(h.eventsMatching("switch", "intent")); got != r.Stages[0].Devices {
				t.Errorf("%d switch intents, want only the %d canary devices", got, r.Stages[0].Devices)
			}
			if r.Stages[0].Verdict != "failed" {
				t.Errorf("canary verdict %q", r.Stages[0].Verdict)
			}
			var rb *Decision
			for i := range r.Decisions {
				if r.Decisions[i].Kind == "rollback" {
					rb = &r.Decisions[i]
				}
			}
			if rb == nil || !strings.Contains(rb.Reason, "artifact issue") {
				t.Fatalf("rollback decision = %+v, want an artifact-issue analysis with every device failed", rb)
			}
			if a, _ := h.store.ActiveSlot(context.Background(), "edgeinfer"); a.Slot != SlotBlue || a.Version != "1.0.0" {
				t.Errorf("active slot changed to %+v", a)
			}
			for _, rec := range r.Devices {
				if rec.Stage == 0 && rec.State != DeviceRolledBack {
					t.Errorf("canary device %s is %s, want rolled-back", rec.Name, rec.State)
				}
				if rec.Stage > 0 && rec.State != DevicePending {
					t.Errorf("wave device %s is %s, want pending (never touched)", rec.Name, rec.State)
				}
			}
		})
	}
}

func TestControllerFirstInstallRollbackRemovesSlot(t *testing.T) {
	h := newHarness(t, 6)
	h.health.broken["*"] = "crash"
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s", r.Outcome)
	}
	h.assertSlots(func(Device) string { return "" })
}

func TestControllerOfflineDeviceSkippedNotFailed(t *testing.T) {
	h := newHarness(t, 12)
	// A device of the last wave cannot be reached at switch time.
	var victim Device
	r0, _ := PlanRollout(h.policy, h.registry.devices)
	victim = Device{ID: r0.Stages[2].Devices[0].ID, Name: r0.Stages[2].Devices[0].Name}
	h.cluster.offline[victim.ID] = true
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s, want succeeded", r.Outcome)
	}
	rec := r.Devices[victim.ID]
	if rec.State != DeviceSkippedOffline {
		t.Fatalf("offline device is %s, want skipped-offline", rec.State)
	}
	if r.Stages[2].Failed != 0 || r.Stages[2].Offline != 1 {
		t.Errorf("last stage failed=%d offline=%d, want 0 and 1", r.Stages[2].Failed, r.Stages[2].Offline)
	}
	h.assertSlots(func(d Device) string {
		if d.ID == victim.ID {
			return ""
		}
		return SlotBlue
	})
}

func TestControllerQuarantinesLoneFailure(t *testing.T) {
	h := newHarness(t, 30)
	h.policy.Rollback.MaxFailurePercent = 20
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	bad := plan.Stages[2].Devices[0]
	h.health.broken[bad.ID] = "unhealthy"
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s, want succeeded", r.Outcome)
	}
	if st := r.Devices[bad.ID].State; st != DeviceQuarantined {
		t.Fatalf("lone failing device is %s, want quarantined", st)
	}
	if r.Devices[bad.ID].Layer != 3 || !strings.Contains(r.Devices[bad.ID].Reason, "critical") {
		t.Errorf("quarantine reason %q layer %d", r.Devices[bad.ID].Reason, r.Devices[bad.ID].Layer)
	}
	if _, ok := h.registry.quarantined[bad.ID]; !ok {
		t.Errorf("device not quarantined in the registry")
	}
	h.assertSlots(func(d Device) string {
		if d.ID == bad.ID {
			return ""
		}
		return SlotBlue
	})
}

func TestControllerWaveFailureScopes(t *testing.T) {
	for _, scope := range []RollbackScope{ScopeWave, ScopeFleet} {
		t.Run(string(scope), func(t *testing.T) {
			h := newHarness(t, 30)
			h.policy.Rollback.Scope = scope
			h.store.active["edgeinfer"] = &ActiveSlot{Slot: SlotGreen, Version: "1.0.0", Index: 1}
			for _, d := range h.registry.devices {
				h.cluster.slots[d.ID] = SlotGreen
			}
			// gateways break, but none is in the canary... make the
			// gateways of wave 1+ fail by breaking them after the canary.
			plan, _ := PlanRollout(h.policy, h.registry.devices)
			for _, d := range plan.Stages[1].Devices {
				if d.Class == "gateway" {
					h.health.broken[d.ID] = "crash"
				}
			}
			r, err := h.run(context.Background())
			switch scope {
			case ScopeWave:
				if !errors.Is(err, ErrHalted) {
					t.Fatalf("err = %v, want ErrHalted", err)
				}
				var he *HaltError
				if !errors.As(err, &he) || r.Halt == nil || r.Halt.Remedy != RemedyResumeOrRollback || he.Halt != *r.Halt {
					t.Errorf("halt %+v (error %v) does not say how to go on (want remedy %q)", r.Halt, err, RemedyResumeOrRollback)
				}
				if d := r.Decisions[len(r.Decisions)-1]; d.Kind != DecisionHalted || d.Halt == nil || d.Halt.Remedy != RemedyResumeOrRollback {
					t.Errorf("last decision %+v is not the halt with its remedy", d)
				}
				for _, rec := range r.Devices {
					want := SlotGreen
					if rec.Stage == 0 {
						want = SlotBlue
					}
					if got := h.cluster.slot(rec.ID); got != want {
						t.Errorf("%s (stage %d, %s) on %q, want %q", rec.Name, rec.Stage, rec.State, got, want)
					}
				}
				var analysis string
				for _, d := range r.Decisions {
					if d.Kind == "rollback" {
						analysis = d.Reason
					}
				}
				if !strings.Contains(analysis, "compatibility issue") || !strings.Contains(analysis, "gateway") {
					t.Errorf("analysis %q, want a compatibility issue naming gateway", analysis)
				}
			case ScopeFleet:
				if err != nil {
					t.Fatal(err)
				}
				if r.Outcome != OutcomeRolledBack {
					t.Fatalf("outcome %s", r.Outcome)
				}
				h.assertSlots(func(Device) string { return SlotGreen })
			}
		})
	}
}

func TestControllerSwitchFailingPartwayIsRestored(t *testing.T) {
	h := newHarness(t, 30)
	h.policy.Rollback.MaxFailurePercent = 50
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	bad := plan.Stages[1].Devices[0]
	h.cluster.failOnce[bad.ID] = fmt.Errorf("stopping the old allocation on %s: timeout", bad.Name)
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec := r.Devices[bad.ID]
	if rec.State != DeviceQuarantined || !strings.Contains(rec.Reason, "switch failed") {
		t.Fatalf("device %s: %s %q, want quarantined after a failed switch", rec.Name, rec.State, rec.Reason)
	}
	if got := h.cluster.slot(bad.ID); got != "" {
		t.Errorf("device left on slot %q after a failed switch, want restored", got)
	}
}

func TestControllerResumeAfterKill(t *testing.T) {
	for _, killAfter := range []int{1, 3, 5, 8} {
		t.Run(fmt.Sprintf("after-%d-switches", killAfter), func(t *testing.T) {
			h := newHarness(t, 12)
			h.policy.MaxParallel = 1
			ctx, cancel := context.WithCancel(context.Background())
			h.cluster.onSwitch = func(n int) {
				if n == killAfter {
					cancel()
				}
			}
			r, err := h.run(ctx)
			if err == nil || r.Finished() {
				t.Fatalf("first controller finished (%v) despite being killed", err)
			}
			h.cluster.onSwitch = nil
			// A new controller picks up the persisted state.
			r, err = h.run(context.Background())
			if err != nil {
				t.Fatalf("resumed run: %v", err)
			}
			if r.Outcome != OutcomeSucceeded {
				t.Fatalf("resumed run ended %s", r.Outcome)
			}
			h.assertSlots(func(Device) string { return SlotBlue })
			if len(h.eventsMatching("resume", "ok")) != 1 {
				t.Errorf("expected one resume event")
			}
		})
	}
}

func TestControllerWaitsForApproval(t *testing.T) {
	h := newHarness(t, 6)
	c := h.controller()
	c.AutoApprove = false
	type result struct {
		r   *Rollout
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.Run(context.Background())
		done <- result{r, err}
	}()
	// Wait (with a deadline) until the controller is waiting.
	deadline := time.Now().Add(10 * time.Second)
	for len(h.eventsMatching("await-approval", "waiting")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("controller never waited for approval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case res := <-done:
		t.Fatalf("controller finished without approval: %+v %v", res.r.Phase, res.err)
	default:
	}
	h.store.setControls("edgeinfer", func(c *Controls) {
		c.Approval = &ApprovalRecord{Actor: "alice@ops", Time: h.clock.Now(), Message: "looks good"}
	})
	var res result
	select {
	case res = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("controller did not go on after approval")
	}
	if res.err != nil || res.r.Outcome != OutcomeSucceeded {
		t.Fatalf("after approval: %v %s", res.err, res.r.Outcome)
	}
	if res.r.Approval.Actor != "alice@ops" || res.r.Approval.Saw == "" {
		t.Errorf("approval recorded as %+v", res.r.Approval)
	}
}

func TestControllerManualRollback(t *testing.T) {
	h := newHarness(t, 6)
	c := h.controller()
	c.AutoApprove = false
	done := make(chan *Rollout, 1)
	go func() {
		r, _ := c.Run(context.Background())
		done <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(h.eventsMatching("await-approval", "waiting")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("controller never waited for approval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.store.setControls("edgeinfer", func(c *Controls) {
		c.Rollback = &Request{Actor: "bob@ops", Reason: "customer complaint"}
	})
	var r *Rollout
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("controller did not roll back")
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s", r.Outcome)
	}
	h.assertSlots(func(Device) string { return "" })
	if !strings.Contains(r.RollbackReason, "bob@ops") || !strings.Contains(r.RollbackReason, "customer complaint") {
		t.Errorf("rollback reason %q", r.RollbackReason)
	}
}

func TestControllerRetriesTransientSaveFailures(t *testing.T) {
	h := newHarness(t, 6)
	h.store.failSaves = 3
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run with a flaky store: %v %v", err, r)
	}
}

func TestControllerRefusesOtherVersionInProgress(t *testing.T) {
	h := newHarness(t, 6)
	ctx, cancel := context.WithCancel(context.Background())
	h.cluster.onSwitch = func(n int) { cancel() }
	if _, err := h.run(ctx); err == nil {
		t.Fatal("expected the killed run to fail")
	}
	h.cluster.onSwitch = nil
	h.policy.Release.Version = "9.9.9"
	_, err := h.run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "in progress with version 2.0.0") {
		t.Fatalf("err = %v, want a refusal naming the version in progress", err)
	}
}

func TestControllerHaltsWhenTooManyOffline(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Offline.MaxOfflinePercent = 10
	h.registry.devices[0].Status = StatusOffline
	h.registry.devices[1].Status = StatusOffline
	r, err := h.run(context.Background())
	if !errors.Is(err, ErrHalted) || r.Halt == nil || !strings.Contains(r.Halt.Reason, "max_offline_percent") || r.Halt.Remedy != RemedyResume || r.Halt.Fix == "" {
		t.Fatalf("err=%v halt=%+v", err, r.Halt)
	}
	h.assertSlots(func(Device) string { return "" })
}

func TestControllerCatchesUpReturningDevice(t *testing.T) {
	h := newHarness(t, 12)
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	victim := plan.Stages[1].Devices[0]
	h.cluster.offline[victim.ID] = true
	h.health.offline[victim.ID] = true
	// The device returns once the last wave starts switching.
	lastWave := plan.Stages[2].Devices[0].ID
	h.cluster.onSwitch = func(int) {
		h.cluster.mu.Lock()
		defer h.cluster.mu.Unlock()
		if h.cluster.slots[lastWave] == SlotBlue {
			h.cluster.offline[victim.ID] = false
			h.health.mu.Lock()
			h.health.offline[victim.ID] = false
			h.health.mu.Unlock()
		}
	}
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec := r.Devices[victim.ID]
	if rec.State != DeviceCaughtUp || !rec.CatchUp {
		t.Fatalf("returning device is %s (catch-up %v), want caught-up", rec.State, rec.CatchUp)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
	if len(h.eventsMatching("catch-up", "caught-up")) != 1 {
		t.Errorf("expected one caught-up event")
	}
}

func TestCatchUpAfterDone(t *testing.T) {
	h := newHarness(t, 6)
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	victim := plan.Stages[2].Devices[0]
	h.cluster.offline[victim.ID] = true
	h.health.offline[victim.ID] = true
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v %v", err, r.Outcome)
	}
	if r.Devices[victim.ID].State != DeviceSkippedOffline {
		t.Fatalf("victim %s", r.Devices[victim.ID].State)
	}
	// Still offline: nothing happens.
	c := h.controller()
	if r, err = c.CatchUp(context.Background(), false); err != nil || r.Devices[victim.ID].State != DeviceSkippedOffline {
		t.Fatalf("catch-up while offline: %v %s", err, r.Devices[victim.ID].State)
	}
	h.cluster.offline[victim.ID] = false
	h.health.offline[victim.ID] = false
	c = h.controller()
	r, err = c.CatchUp(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Devices[victim.ID].State; st != DeviceCaughtUp {
		t.Fatalf("victim after catch-up: %s", st)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

func TestCatchUpAfterRollbackRevertsAttemptedDevice(t *testing.T) {
	h := newHarness(t, 6)
	h.health.broken["*"] = "crash"
	plan, _ := PlanRollout(h.policy, h.registry.devices)
	victim := plan.Stages[0].Devices[0]
	// The device takes the metadata, then goes offline before the
	// rollback can reach it.
	h.cluster.onSwitch = func(n int) {
		h.cluster.mu.Lock()
		defer h.cluster.mu.Unlock()
		if h.cluster.slots[victim.ID] == SlotBlue {
			h.cluster.offline[victim.ID] = true
		}
	}
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeRolledBack {
		t.Fatalf("run: %v %v", err, r.Outcome)
	}
	if rec := r.Devices[victim.ID]; rec.State != DeviceSkippedOffline || !rec.Attempted {
		t.Fatalf("victim %s attempted=%v, want skipped-offline and attempted", rec.State, rec.Attempted)
	}
	h.cluster.onSwitch = nil
	h.cluster.offline[victim.ID] = false
	r, err = h.controller().CatchUp(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Devices[victim.ID].State; st != DeviceRolledBack {
		t.Fatalf("victim after catch-up: %s", st)
	}
	h.assertSlots(func(Device) string { return "" })
}

func TestGradualDegradationRollsBackCanary(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	h.policy.Canary.Soak = 60 * time.Second
	h.health.metrics = func(id string, now time.Time, switched time.Time) *Metrics {
		// Memory leaks 2 MB/s from a 10 MB baseline.
		return &Metrics{MemoryMB: 10 + 2*now.Sub(switched).Seconds(), P95LatencyMS: 5}
	}
	h.health.baseline = &Metrics{MemoryMB: 10, P95LatencyMS: 5}
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s, want rolled back for gradual degradation", r.Outcome)
	}
	if !r.Stages[0].Extended {
		t.Errorf("canary soak was not extended before rolling back")
	}
	if !strings.Contains(r.RollbackReason, "gradual degradation") || !strings.Contains(r.RollbackReason, "memory") {
		t.Errorf("rollback reason %q", r.RollbackReason)
	}
}

func TestNoDegradationOnFlatMetrics(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	h.health.metrics = func(id string, now time.Time, switched time.Time) *Metrics {
		wobble := float64(now.Unix()%3) * 0.1
		return &Metrics{MemoryMB: 10 + wobble, P95LatencyMS: 5 + wobble}
	}
	h.health.baseline = &Metrics{MemoryMB: 10, P95LatencyMS: 5}
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %v", err, r.Outcome)
	}
	if r.Stages[0].Extended {
		t.Errorf("soak extended on flat metrics")
	}
	for _, rec := range r.Devices {
		if rec.Baseline == nil || rec.After == nil {
			t.Errorf("%s: baseline %v after %v, want both recorded for the health delta", rec.Name, rec.Baseline, rec.After)
		}
	}
}

func TestLatencyRegressionFailsAgainstBaseline(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	h.policy.Rollback.MaxP95LatencyIncreasePercent = 20
	h.health.metrics = func(id string, now time.Time, switched time.Time) *Metrics {
		return &Metrics{MemoryMB: 10, P95LatencyMS: 40}
	}
	h.health.baseline = &Metrics{MemoryMB: 10, P95LatencyMS: 10}
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeRolledBack {
		t.Fatalf("%v %v", err, r.Outcome)
	}
	if !strings.Contains(r.RollbackReason, "p95 latency 40.0 ms vs 10.0 ms") || !strings.Contains(r.RollbackReason, "layer 4") {
		t.Errorf("reason %q", r.RollbackReason)
	}
}

func TestControllerBlueGreenKeepsStandbyUntilConfirm(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
	var mu sync.Mutex
	var during []string
	h.cluster.onSwitch = func(int) {
		for _, d := range h.registry.devices {
			if v := h.cluster.slot(d.ID); v != SlotBlue && v != SlotGreen {
				mu.Lock()
				during = append(during, v)
				mu.Unlock()
			}
		}
	}
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("%v %v", err, r.Outcome)
	}
	if len(during) == 0 || during[0] != "blue,green" {
		t.Fatalf("devices never ran both slots during the rollout: %v", during)
	}
	h.assertSlots(func(Device) string { return SlotGreen })
}

func TestControllerBlueGreenRollbackStopsCandidateOnly(t *testing.T) {
	h := newHarness(t, 6)
	h.policy.Strategy = StrategyBlueGreen
	h.upgradeFrom("1.0.0")
	h.health.broken["*"] = "unhealthy"
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeRolledBack {
		t.Fatalf("%v %v", err, r.Outcome)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

// TestEventDeliveryDoesNotHoldTheController checks that OnEvent runs on a
// path of its own: while a (slow) OnEvent runs, the controller's operator
// requests stay readable.
func TestEventDeliveryDoesNotHoldTheController(t *testing.T) {
	h := newHarness(t, 6)
	ctl := h.controller()
	var blocked atomic.Int32
	ctl.OnEvent = func(e Event) {
		done := make(chan struct{})
		go func() {
			ctl.controls.current()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			blocked.Add(1)
		}
	}
	r, err := ctl.Run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
	}
	if n := blocked.Load(); n > 0 {
		t.Fatalf("%d events held the controller's requests while they were delivered", n)
	}
}

// A canary device whose connectivity check goes critical after its switch
// (its node agents going away: a power loss) while the servers still list
// it as up is offline at the end of the soak, never failed: it counts
// against max_offline_after_switch_percent and is verified when it
// returns. (The fault suite's power-off trial, seed 703, rolled a good
// release back when the servers had not yet noticed the device was gone.)
func TestControllerLostConnectivityIsOfflineNotFailed(t *testing.T) {
	h := newHarness(t, 12)
	h.policy.Rollback.MaxOfflineAfterSwitchPercent = 50
	r0, _ := PlanRollout(h.policy, h.registry.devices)
	victim := r0.Stages[0].Devices[0].ID
	h.health.lostConnectivity = map[string]bool{victim: true}
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded", r.Outcome, r.RollbackReason)
	}
	rec := r.Devices[victim]
	if rec.State != DeviceSkippedOffline || rec.Failed {
		t.Fatalf("device that lost its connectivity is %s (failed %v): %s; want skipped-offline", rec.State, rec.Failed, rec.Reason)
	}
	if !strings.Contains(rec.Reason, "lost its connectivity") {
		t.Errorf("reason %q does not say the device lost its connectivity", rec.Reason)
	}
	if r.Stages[0].Failed != 0 || r.Stages[0].Offline != 1 {
		t.Errorf("canary failed=%d offline=%d, want 0 and 1", r.Stages[0].Failed, r.Stages[0].Offline)
	}

	// Without room for offline devices, the same loss stops the rollout
	// through max_offline_after_switch_percent, not as a failed device.
	h = newHarness(t, 12)
	h.policy.Rollback.MaxOfflineAfterSwitchPercent = 0
	h.health.lostConnectivity = map[string]bool{victim: true}
	r, err = h.run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Outcome == OutcomeSucceeded || !strings.Contains(r.RollbackReason, "offline") {
		t.Fatalf("outcome %s (%q), want a rollback for devices offline after their switch", r.Outcome, r.RollbackReason)
	}
	if r.Devices[victim].Failed {
		t.Errorf("the device that lost its connectivity is counted as failed: %s", r.Devices[victim].Reason)
	}
}
