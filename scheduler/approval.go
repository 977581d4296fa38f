package scheduler

import (
	"context"
	"fmt"
)

// awaitApproval waits for an operator's approval of the canary (or records
// the automatic one).
func (c *Controller) awaitApproval(ctx context.Context, r *Rollout) error {
	auto := c.AutoApprove || c.Policy.Canary.Approval == ApprovalAuto
	for {
		ctl := c.controls.current()
		if ctl.Rollback != nil {
			return c.manualRollback(ctx, r, ctl.Rollback)
		}
		var a *ApprovalRecord
		switch {
		case ctl.Approval != nil:
			a = ctl.Approval
		case auto:
			a = &ApprovalRecord{Actor: c.Actor + " (auto-approve)", Time: c.Clock.Now(), Message: "approved automatically"}
		}
		if a != nil {
			if a.Saw == "" {
				a.Saw = CanarySummary(r)
			}
			r.Approval = a
			c.decide(r, DecisionApproved, fmt.Sprintf("canary approved by %s: %s", a.Actor, a.Saw), nil)
			if len(r.Stages) > 1 {
				r.Phase = PhaseWave
				r.Stage = 1
				r.Step = StepSwitching
			} else {
				r.Phase = PhaseConfirm
			}
			return c.save(ctx, r)
		}
		if r.LastAction != "waiting for approval" {
			r.LastAction = "waiting for approval"
			c.emit(r, "", "await-approval", "waiting", "canary passed; waiting for an operator's approval")
			if err := c.save(ctx, r); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.controls.wake():
		}
	}
}

// confirm makes the candidate slot the active one.
func (c *Controller) confirm(ctx context.Context, r *Rollout) error {
	var late []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.CatchUp && rec.State == DeviceVerifying {
			late = append(late, rec)
		}
	}
	if err := c.verifyCaughtUp(ctx, r, late); err != nil {
		return err
	}
	if err := c.finishBlueGreen(ctx, r); err != nil {
		return err
	}
	now := c.Clock.Now()
	if err := c.intent(ctx, r, "", "confirm", fmt.Sprintf("slot %s becomes the active slot with version %s", r.Candidate, r.Version)); err != nil {
		return err
	}
	next := &ActiveSlot{Slot: r.Candidate, Version: r.Version, RolloutID: r.ID, Since: now}
	cur, err := c.Store.ActiveSlot(ctx, r.App)
	if err != nil {
		return fmt.Errorf("reading the active slot of %s: %w", r.App, err)
	}
	if cur != nil {
		if cur.RolloutID == r.ID && cur.Slot == r.Candidate {
			next = cur // confirmed before a restart
		}
		next.Index = cur.Index
	}
	if err := c.Store.SetActiveSlot(ctx, r.App, next); err != nil {
		return fmt.Errorf("recording slot %s as active for %s: %w", r.Candidate, r.App, err)
	}
	c.emit(r, "", "confirm", "ok", "")
	c.decide(r, DecisionConfirmed, fmt.Sprintf("%s %s is the active version (slot %s)", r.App, r.Version, r.Candidate), nil)
	r.Phase = PhaseDone
	r.Outcome = OutcomeSucceeded
	r.FinishedAt = now
	return c.save(ctx, r)
}
