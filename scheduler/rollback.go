package scheduler

import (
	"context"
	"errors"
	"fmt"
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
	r.RollbackReason = reason
	r.Phase = PhaseRollingBack
	r.Step = ""
	return c.save(ctx, r)
}

// rollBack puts every device of the rollback's scope back on the active
// slot. Nothing in it needs the candidate version to work.
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
	if err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error { return c.rollBackDevice(ctx, r, rec) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		// Interrupted: devices not yet taken back keep their state and a
		// resumed controller finishes the rollback.
		return err
	}
	now := c.Clock.Now()
	if r.RollbackScope == ScopeWave && r.Stage > 0 {
		r.Phase = PhaseWave
		r.Step = StepGate
		return c.halt(ctx, r, Halt{
			Reason: fmt.Sprintf("%s was rolled back (%s); earlier stages still run %s", r.Stages[r.Stage].Name, r.RollbackReason, r.Version),
			Remedy: RemedyResumeOrRollback,
		})
	}
	r.Phase = PhasePrepare
	r.Step = ""
	r.Outcome = OutcomeRolledBack
	r.FinishedAt = now
	c.decide(r, DecisionRolledBack, fmt.Sprintf("every device is back on %s (slot %s)", versionName(r.PreviousVersion), slotName(r.Active)), nil)
	return c.save(ctx, r)
}

func (c *Controller) rollBackDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.State = DeviceRollingBack
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	c.emitDevice(r, rec, "rollback", "intent", fmt.Sprintf("slot %s -> %s", r.Candidate, slotName(r.Active)))
	start := c.Clock.Now()
	err := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
	switch {
	case err == nil:
		rec.State = DeviceRolledBack
		rec.Attempted = false
		c.emitDevice(r, rec, "rollback", "ok", fmt.Sprintf("back on slot %s in %s", slotName(r.Active), c.Clock.Now().Sub(start).Round(time.Millisecond)))
	case errors.Is(err, ErrDeviceOffline):
		rec.State = DeviceSkippedOffline
		rec.Reason = "offline during the rollback; it will be rolled back when it returns"
		c.emitDevice(r, rec, "rollback", "skipped-offline", err.Error())
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		c.emitDevice(r, rec, "rollback", "error", err.Error())
		return fmt.Errorf("rolling back device %s: %w", rec.Name, err)
	}
	return c.saveDevice(ctx, r, rec)
}
