package scheduler

import (
	"context"
	"fmt"
)

// gate evaluates the stage's thresholds and decides: pass, quarantine the
// few devices that failed, or roll back.
func (c *Controller) gate(ctx context.Context, r *Rollout) error {
	st := &r.Stages[r.Stage]
	// After the full soak a device that is not healthy fails; after a
	// fail-fast, devices still starting stay undecided (and are rolled
	// back with the others).
	soakEnded := !c.Clock.Now().Before(st.SoakUntil)
	// The devices' own numbers, fresh: asked at the start of the gate.
	sums, err := c.gateSummaries(ctx, r)
	if err != nil {
		return err
	}
	if err := c.sampleDevicesWith(ctx, r, sampledRecords(r), soakEnded, sums); err != nil {
		return err
	}
	recs := r.StageDevices(r.Stage)
	t := TallyDevices(recs)
	attempted, failed, offline := t.Attempted, t.Failed, t.Offline
	st.Attempted, st.Failed, st.Offline = attempted, failed, offline
	failPct := t.FailurePercent()
	numbers := map[string]float64{
		"attempted": float64(attempted), "failed": float64(failed), "offline": float64(offline),
		"failure_percent": failPct, "max_failure_percent": c.Policy.Rollback.MaxFailurePercent,
	}
	if st.Degradation != "" {
		st.Verdict = "failed"
		st.FinishedAt = c.Clock.Now()
		reason := fmt.Sprintf("%s failed its gate: %s", st.Name, st.Degradation)
		c.decide(r, DecisionRollback, reason, numbers)
		return c.beginRollback(ctx, r, c.Policy.Rollback.Scope, reason)
	}
	// I6: devices that went offline after switching to the candidate
	// count against their own threshold (a release that knocks devices
	// off the network must not be confirmed).
	offAfter := t.OfflineAfterSwitch
	numbers["offline_after_switch"] = float64(offAfter)
	if switched := attempted + offAfter; offAfter > 0 && percent(offAfter, switched) > c.Policy.Rollback.MaxOfflineAfterSwitchPercent {
		st.Verdict = "failed"
		st.FinishedAt = c.Clock.Now()
		reason := fmt.Sprintf("%s failed its gate: %d of %d switched devices went offline after their switch (%.1f%% > max_offline_after_switch_percent %g)",
			st.Name, offAfter, switched, percent(offAfter, switched), c.Policy.Rollback.MaxOfflineAfterSwitchPercent)
		c.decide(r, DecisionRollback, reason, numbers)
		return c.beginRollback(ctx, r, c.Policy.Rollback.Scope, reason)
	}
	if attempted == 0 && st.Canary {
		st.Verdict = "inconclusive"
		return c.halt(ctx, r, Halt{Reason: fmt.Sprintf("no canary device could be reached (%d offline)", offline), Fix: "bring devices back online", Remedy: RemedyResume})
	}
	if failPct > c.Policy.Rollback.MaxFailurePercent {
		st.Verdict = "failed"
		st.FinishedAt = c.Clock.Now()
		analysis := AnalyzeFailures(recs)
		reason := fmt.Sprintf("%s failed its gate: %d of %d devices failed (%.1f%% > max_failure_percent %g). Failure analysis: %s",
			st.Name, failed, attempted, failPct, c.Policy.Rollback.MaxFailurePercent, analysis)
		c.record(r, Decision{Kind: DecisionRollback, Reason: reason, Numbers: numbers, Analysis: &analysis})
		return c.beginRollback(ctx, r, c.Policy.Rollback.Scope, reason)
	}
	// Under the threshold: devices that failed alone are rolled back
	// individually and quarantined; the rollout goes on.
	for _, rec := range recs {
		if rec.State != DeviceFailed {
			continue
		}
		if err := c.quarantine(ctx, r, rec); err != nil {
			return err
		}
	}
	st.Verdict = "passed"
	st.FinishedAt = c.Clock.Now()
	c.decide(r, DecisionGatePassed, fmt.Sprintf("%s passed its gate: %d of %d devices healthy, %d failed (%.1f%% <= %g), %d offline",
		st.Name, attempted-failed, attempted, failed, failPct, c.Policy.Rollback.MaxFailurePercent, offline), numbers)
	switch {
	case st.Canary:
		r.Phase = PhaseAwaitingApproval
		r.Step = ""
	case r.Stage+1 < len(r.Stages):
		r.Phase = PhaseWave
		r.Stage++
		r.Step = StepSwitching
	default:
		r.Phase = PhaseConfirm
		r.Step = ""
	}
	return c.save(ctx, r)
}
