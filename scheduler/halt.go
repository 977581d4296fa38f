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

// Resume clears a halt so that the next Run retries from where the halt
// makes sense again:
//   - halted in VALIDATE (too many devices offline): planning is redone, so
//     the offline counts are the registry's now, not PREPARE's;
//   - the canary reached no device: its devices skipped offline are
//     switched again;
//   - a wave rolled back with scope "wave": its rolled-back devices become
//     pending and the wave runs again.
func Resume(r *Rollout) {
	if r.Halt == nil {
		return
	}
	r.Halt = nil
	switch {
	case r.Phase == PhaseValidate || r.Phase == PhasePrepare:
		r.Phase = PhasePrepare
		r.Step = ""
	case r.Phase == PhaseCanary && r.Step == StepGate:
		retryStage(r, DeviceSkippedOffline)
	case r.Phase == PhaseWave && r.Step == StepGate && r.RollbackScope != "":
		retryStage(r, DeviceRolledBack)
		r.RollbackScope, r.RollbackReason = "", ""
	}
}

// retryStage makes the current stage's devices in state from pending again
// and restarts the stage at its switching step.
func retryStage(r *Rollout, from DeviceState) {
	for _, rec := range r.Devices {
		if rec.Stage == r.Stage && rec.State == from {
			rec.State = DevicePending
			rec.Reason = ""
			rec.Failed, rec.Layer = false, 0
		}
	}
	st := &r.Stages[r.Stage]
	st.Verdict, st.StartedAt, st.SoakUntil, st.FinishedAt = "", time.Time{}, time.Time{}, time.Time{}
	st.Extended, st.Degradation = false, ""
	r.Step = StepSwitching
}
