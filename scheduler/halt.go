package scheduler

import (
	"context"
	"time"
)

// halt stops the rollout for an operator, with the reason and the remedy.
func (c *Controller) halt(ctx context.Context, r *Rollout, h Halt) error {
	r.Halt = &h
	c.record(r, Decision{Kind: DecisionHalted, Reason: h.Reason, Halt: &h})
	if err := c.save(ctx, r); err != nil {
		return err
	}
	return &HaltError{Halt: h}
}

// Resume clears a halt so that the next Run retries: devices of the halted
// stage that were rolled back become pending again.
func Resume(r *Rollout) {
	if r.Halt == nil {
		return
	}
	r.Halt = nil
	if r.Phase == PhaseWave && r.Step == StepGate && r.RollbackScope != "" {
		for _, rec := range r.Devices {
			if rec.Stage == r.Stage && rec.State == DeviceRolledBack {
				rec.State = DevicePending
				rec.Reason = ""
				rec.Failed, rec.Layer = false, 0
			}
		}
		st := &r.Stages[r.Stage]
		st.Verdict, st.StartedAt, st.SoakUntil, st.FinishedAt = "", time.Time{}, time.Time{}, time.Time{}
		st.Extended, st.Degradation = false, ""
		r.Step = StepSwitching
		r.RollbackScope, r.RollbackReason = "", ""
	}
}
