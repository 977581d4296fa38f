package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// manualRollback starts a rollback an operator asked for.
func (c *Controller) manualRollback(ctx context.Context, r *Rollout, req *Request) error {
	reason := fmt.Sprintf("manual rollback requested by %s", req.Actor)
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	c.decide(r, DecisionRollback, reason, nil)
	return c.beginRollback(ctx, r, ScopeFleet, reason)
}

// beginRollback moves the rollout to ROLLING_BACK with a scope.
func (c *Controller) beginRollback(ctx context.Context, r *Rollout, scope RollbackScope, reason string) error {
	if scope == "" {
		scope = ScopeWave
	}
	// A failed canary is the only stage on the candidate: both scopes
	// mean the same. A wave with scope "wave" takes back that wave only
	// and halts for an operator.
	r.RollbackScope = scope
	r.RollbackStage = r.Stage
	r.RollbackTimes = &RollbackTimes{TriggeredAt: c.Clock.Now()}
	r.RollbackReason = reason
	r.Phase = PhaseRollingBack
	r.Step = ""
	return c.save(ctx, r)
}

// rollBack puts every device of the rollback's scope back on the active
// slot, then verifies that the old slot runs there and passes its checks.
// Nothing in it needs the candidate version to work.
//
// Invariant I2 (verified rollback): a device is rolled-back only when the
// old slot's allocation runs on it and its checks pass, judged by the same
// health source and deadline as a switch; a rollback that cannot be
// verified on every device it covered ends as rollback-incomplete, naming
// the devices, never as rolled-back.
func (c *Controller) rollBack(ctx context.Context, r *Rollout) error {
	var todo []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.Stage < 0 {
			continue
		}
		if r.RollbackScope == ScopeWave && r.Stage > 0 && rec.Stage != r.RollbackStage {
			continue
		}
		if rec.State.OnCandidate() || (rec.State == DeviceSkippedOffline && rec.Attempted) {
			todo = append(todo, rec)
		}
	}
	// Blue-green: the traffic goes back to the old slot (its hot standby)
	// first, in one write per device, before the candidate is stopped.
	if err := c.trafficBack(ctx, r, todo); err != nil {
		return err
	}
	if err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error { return c.rollBackDevice(ctx, r, rec) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		// Interrupted: devices not yet taken back keep their state and a
		// resumed controller finishes the rollback.
		return err
	}
	if t := r.RollbackTimes; t != nil && t.CandidateStoppedAt.IsZero() && len(todo) > 0 {
		t.CandidateStoppedAt = c.Clock.Now()
		if t.Devices == 0 {
			t.Devices = len(todo)
		}
	}
	// A device whose switch back failed (its client took the metadata
	// but the server never showed it, ...) did not stop the others: it
	// is unverified, like one whose old slot did not pass in time.
	var notSwitched []*DeviceRecord
	for _, rec := range todo {
		if rec.State == DeviceRollingBack && rec.RollbackAt.IsZero() {
			notSwitched = append(notSwitched, rec)
		}
	}
	unverified, err := c.verifyRollback(ctx, r, todo)
	if err != nil {
		return err
	}
	unverified = append(notSwitched, unverified...)
	if r.RollbackScope != ScopeWave || r.Stage == 0 {
		if err := c.restoreActiveSlot(ctx, r); err != nil {
			return err
		}
	}
	now := c.Clock.Now()
	if len(unverified) > 0 {
		r.Phase = PhasePrepare
		r.Step = ""
		r.Outcome = OutcomeRollbackIncomplete
		r.FinishedAt = now
		c.decide(r, DecisionRollbackIncomplete, fmt.Sprintf("%d device(s) could not be verified back on %s (slot %s): %s",
			len(unverified), versionName(r.PreviousVersion), slotName(r.Active), describeDevices(unverified)),
			map[string]float64{"unverified": float64(len(unverified))})
		return c.save(ctx, r)
	}
	restored := restoreNumbers(todo)
	if t := r.RollbackTimes; t != nil && !t.CandidateStoppedAt.IsZero() {
		if restored == nil {
			restored = map[string]float64{}
		}
		restored["candidate_stopped_seconds"] = t.CandidateStopped().Seconds()
		if !t.TrafficBackAt.IsZero() {
			restored["traffic_back_seconds"] = t.TrafficBack().Seconds()
		}
	}
	if r.RollbackScope == ScopeWave && r.Stage > 0 {
		r.Phase = PhaseWave
		r.Step = StepGate
		return c.halt(ctx, r, Halt{
			Reason: fmt.Sprintf("%s was rolled back (%s); earlier stages still run %s", r.Stages[r.Stage].Name, r.RollbackReason, r.Version),
			Remedy: RemedyResumeOrRollback,
		})
	}
	// I1: the rejected release runs nowhere after its rollback.
	if err := c.intent(ctx, r, "", "retire-candidate", fmt.Sprintf("stopping the rejected slot job %s-%s", r.App, r.Candidate)); err != nil {
		return err
	}
	if err := c.clusterCall(ctx, "stopping the rejected candidate of "+r.App, func() error { return c.Cluster.RetireCandidate(ctx, r) }); err != nil {
		c.emit(r, "", "retire-candidate", "error", err.Error())
		return err
	}
	c.emit(r, "", "retire-candidate", "ok", "")
	r.Phase = PhasePrepare
	r.Step = ""
	r.Outcome = OutcomeRolledBack
	r.FinishedAt = now
	reason := fmt.Sprintf("every device is back on %s (slot %s), verified running and passing its checks", versionName(r.PreviousVersion), slotName(r.Active))
	if n := r.FleetTally().OfflineAfterSwitch; n > 0 {
		reason = fmt.Sprintf("every reachable device is back on %s (slot %s), verified running and passing its checks; %d device(s) offline, rolled back and verified when they return (catch-up)",
			versionName(r.PreviousVersion), slotName(r.Active), n)
	}
	c.decide(r, DecisionRolledBack, reason, restored)
	return c.save(ctx, r)
}

// rollBackDevice switches one device back to the active slot; the device
// stays rolling-back until verifyRollback sees the old slot healthy.
func (c *Controller) rollBackDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.State = DeviceRollingBack
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	if err := c.intent(ctx, r, rec.Name, "rollback", fmt.Sprintf("slot %s -> %s", r.Candidate, slotName(r.Active))); err != nil {
		return err
	}
	start := c.Clock.Now()
	err := c.clusterCall(ctx, "rolling back device "+rec.Name, func() error {
		return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
	})
	switch {
	case err == nil:
		rec.Attempted = false
		rec.StandbyHeld = false
		rec.RollbackAt = c.Clock.Now()
		rec.RestoredAt = time.Time{}
		c.emitDevice(r, rec, "rollback", "ok", fmt.Sprintf("back on slot %s in %s; verifying", slotName(r.Active), c.Clock.Now().Sub(start).Round(time.Millisecond)))
	case errors.Is(err, ErrDeviceOffline):
		rec.State = DeviceSkippedOffline
		rec.Reason = "offline during the rollback; it will be rolled back when it returns"
		c.emitDevice(r, rec, "rollback", "skipped-offline", err.Error())
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, ErrLockLost):
		return err // I8: this controller acts no more
	case errors.Is(err, ErrControlPlane):
		// I5: not the device's; the rollback pauses and is resumed.
		c.emitDevice(r, rec, "rollback", "control-plane-error", err.Error())
		return fmt.Errorf("rolling back device %s: %w", rec.Name, err)
	default:
		// The device's own trouble (its client took the metadata, the
		// server never showed it): the rollback goes on with the other
		// devices and ends incomplete, naming this one; switching back
		// is idempotent, so rolling back again retries it.
		rec.Reason = "rollback not confirmed: " + err.Error()
		c.emitDevice(r, rec, "rollback", "error", err.Error())
	}
	return c.saveDevice(ctx, r, rec)
}

// verifyRollback waits until every device of recs that was switched back
// runs the old slot with its checks passing (rolled-back), went offline
// (skipped, rolled back again when it returns), or passed its deadline
// without that (returned as unverified).
func (c *Controller) verifyRollback(ctx context.Context, r *Rollout, recs []*DeviceRecord) ([]*DeviceRecord, error) {
	var unverified []*DeviceRecord
	done := map[string]bool{}
	for {
		var live []*DeviceRecord
		for _, rec := range recs {
			if rec.State == DeviceRollingBack && !rec.RollbackAt.IsZero() && !done[rec.ID] {
				live = append(live, rec)
			}
		}
		if len(live) == 0 {
			return unverified, nil
		}
		refs := make([]DeviceRef, len(live))
		for i, rec := range live {
			refs[i] = rec.DeviceRef
		}
		view, policy := restoredView(r, c.Policy)
		health, err := c.Health.Health(ctx, view, refs)
		now := c.Clock.Now()
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		for _, rec := range live {
			if err != nil {
				// No evidence is not health: past the deadline the device
				// is unverified, never rolled-back.
				if !now.Before(rec.RollbackAt.Add(c.HealthDeadline)) {
					rec.Reason = "rollback not verified: health unavailable: " + err.Error()
					done[rec.ID] = true
					unverified = append(unverified, rec)
					c.emitDevice(r, rec, "rollback-verify", "unverified", rec.Reason)
					if err := c.saveDevice(ctx, r, rec); err != nil {
						return nil, err
					}
				}
				continue
			}
			v := c.restoreVerdict(r, policy, rec, health[rec.ID], now)
			switch {
			case v.Status == VerdictPass:
				rec.State = DeviceRolledBack
				rec.RestoredAt = now
				c.emitDevice(r, rec, "rollback-verify", "ok", fmt.Sprintf("%s runs on slot %s and passes its checks, %s after its rollback",
					versionName(r.PreviousVersion), slotName(r.Active), now.Sub(rec.RollbackAt).Round(time.Millisecond)))
			case !health[rec.ID].Online:
				rec.State = DeviceSkippedOffline
				rec.Reason = "went offline before its rollback could be verified; verified when it returns"
				c.emitDevice(r, rec, "rollback-verify", "skipped-offline", rec.Reason)
			case v.Status == VerdictFail:
				rec.Reason = "rollback not verified: " + v.Reason
				done[rec.ID] = true
				unverified = append(unverified, rec)
				c.emitDevice(r, rec, "rollback-verify", "unverified", rec.Reason)
			default:
				continue
			}
			if err := c.saveDevice(ctx, r, rec); err != nil {
				return nil, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.Clock.After(c.SampleInterval):
		}
	}
}

// restoredView is the run seen from its active slot: the health source
// and the gate then judge the old version where they judge the candidate.
func restoredView(r *Rollout, p *Policy) (*Rollout, *Policy) {
	view := *r
	view.Candidate = r.Active
	view.Version = r.PreviousVersion
	if r.Active == "" {
		// A first install is rolled back by removing it: the candidate's
		// allocation must be gone.
		view.Candidate = r.Candidate
	}
	pol := *p
	pol.Release.Version = r.PreviousVersion
	return &view, &pol
}

// restoreVerdict judges one device's rollback.
func (c *Controller) restoreVerdict(r *Rollout, p *Policy, rec *DeviceRecord, h DeviceHealth, now time.Time) Verdict {
	late := !now.Before(rec.RollbackAt.Add(c.HealthDeadline))
	if r.Active == "" {
		if h.Online && (h.Alloc == nil || h.Alloc.Status == "complete" || h.Alloc.Status == "failed" || h.Alloc.Status == "lost") {
			return Verdict{Status: VerdictPass}
		}
		if late && h.Online {
			return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("the removed first install still runs (allocation %s)", h.Alloc.Status)}
		}
		return Verdict{Status: VerdictPending}
	}
	probe := DeviceRecord{DeviceRef: rec.DeviceRef, SwitchedAt: rec.RollbackAt}
	v := c.Gate.Evaluate(p, &probe, h, now)
	if v.Status == VerdictFail && v.Confirm && !late {
		// A check caught failing once while the old version starts again:
		// keep reading until the deadline.
		v.Status = VerdictPending
	}
	if v.Status == VerdictPending && late && h.Online {
		return Verdict{Status: VerdictFail, Layer: v.Layer, Reason: fmt.Sprintf("%s after %s (deadline %s)", v.Reason, now.Sub(rec.RollbackAt).Round(time.Second), c.HealthDeadline)}
	}
	return v
}

// restoreNumbers are the verified restore times of a rollback.
func restoreNumbers(recs []*DeviceRecord) map[string]float64 {
	var n int
	var maxS, sum float64
	for _, rec := range recs {
		if rec.State != DeviceRolledBack || rec.RestoredAt.IsZero() || rec.RollbackAt.IsZero() {
			continue
		}
		d := rec.RestoredAt.Sub(rec.RollbackAt).Seconds()
		n++
		sum += d
		maxS = max(maxS, d)
	}
	if n == 0 {
		return nil
	}
	return map[string]float64{"verified_devices": float64(n), "max_restore_seconds": maxS, "mean_restore_seconds": sum / float64(n)}
}

// describeDevices names devices with their reasons, at most five.
func describeDevices(recs []*DeviceRecord) string {
	var parts []string
	for i, rec := range recs {
		if i == 5 {
			parts = append(parts, fmt.Sprintf("and %d more", len(recs)-5))
			break
		}
		parts = append(parts, rec.Name+" ("+rec.Reason+")")
	}
	return strings.Join(parts, ", ")
}

// restoreActiveSlot puts the active-slot record back when CONFIRM of this
// run had already replaced it (a controller that died between recording
// the new active slot and saving DONE, then rolled back): otherwise the
// next run would take the old slot for the candidate and every device on
// it would receive the next release ungated.
func (c *Controller) restoreActiveSlot(ctx context.Context, r *Rollout) error {
	cur, err := c.Store.ActiveSlot(ctx, r.App)
	if err != nil {
		return fmt.Errorf("reading the active slot of %s: %w", r.App, err)
	}
	if cur == nil || cur.RolloutID != r.ID || cur.Slot == r.Active {
		return nil
	}
	back := &ActiveSlot{Slot: r.Active, Version: r.PreviousVersion, Since: c.Clock.Now()}
	if p := r.PreviousActive; p != nil {
		back.RolloutID, back.Since = p.RolloutID, p.Since
	}
	back.Index = cur.Index
	if err := c.intent(ctx, r, "", "restore-active-slot", fmt.Sprintf("slot %s with %s is the active slot again", slotName(r.Active), versionName(r.PreviousVersion))); err != nil {
		return err
	}
	if err := c.Store.SetActiveSlot(ctx, r.App, back); err != nil {
		return fmt.Errorf("restoring slot %s as the active slot of %s: %w", slotName(r.Active), r.App, err)
	}
	c.emit(r, "", "restore-active-slot", "ok", "")
	return nil
}
