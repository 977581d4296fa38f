package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// runStage runs the current stage's remaining steps.
func (c *Controller) runStage(ctx context.Context, r *Rollout) error {
	st := &r.Stages[r.Stage]
	if st.StartedAt.IsZero() {
		st.StartedAt = c.Clock.Now()
	}
	for {
		if ctl := c.controls.current(); ctl.Rollback != nil {
			return c.manualRollback(ctx, r, ctl.Rollback)
		}
		switch r.Step {
		case StepSwitching, "":
			if err := c.waitUnpaused(ctx, r); err != nil {
				return err
			}
			if r.Phase == PhaseRollingBack {
				return nil
			}
			if err := c.switchStage(ctx, r); err != nil {
				return err
			}
			if r.Phase == PhaseRollingBack {
				return nil
			}
			st.SoakUntil = c.Clock.Now().Add(st.Soak)
			r.Step = StepSoaking
			c.decide(r, DecisionSoak, fmt.Sprintf("%s switched; soaking for %s", st.Name, st.Soak), nil)
			if err := c.save(ctx, r); err != nil {
				return err
			}
		case StepSoaking:
			breached, err := c.soak(ctx, r)
			if err != nil {
				return err
			}
			if r.Phase == PhaseRollingBack {
				return nil
			}
			r.Step = StepGate
			if breached {
				c.decide(r, DecisionFailFast, fmt.Sprintf("%s crossed the failure threshold during its soak", st.Name), nil)
			}
			if err := c.save(ctx, r); err != nil {
				return err
			}
		case StepGate:
			return c.gate(ctx, r)
		default:
			return fmt.Errorf("rollout %q is in an unknown step %q", r.App, r.Step)
		}
	}
}

// switchStage switches the stage's pending devices, at most max_parallel at
// a time.
func (c *Controller) switchStage(ctx context.Context, r *Rollout) error {
	var todo []*DeviceRecord
	for _, rec := range r.StageDevices(r.Stage) {
		switch rec.State {
		case DevicePending, DeviceSwitching:
			todo = append(todo, rec)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	interrupted := func() bool {
		ctl := c.controls.current()
		return ctl.Rollback != nil || ctl.Pause != nil
	}
	if err := c.forEach(ctx, todo, interrupted, func(rec *DeviceRecord) error { return c.switchDevice(ctx, r, rec) }); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctl := c.controls.current(); ctl.Rollback != nil {
		return c.manualRollback(ctx, r, ctl.Rollback)
	}
	if ctl := c.controls.current(); ctl.Pause != nil {
		// Paused between two devices: wait, then finish the stage.
		if err := c.waitUnpaused(ctx, r); err != nil {
			return err
		}
		if r.Phase == PhaseRollingBack {
			return nil
		}
		return c.switchStage(ctx, r)
	}
	// Blue-green: each switched device's traffic moves to the candidate
	// once it passed its checks (the soak then judges it under traffic).
	return c.shiftTraffic(ctx, r, r.SortedDevices())
}

// switchDevice moves one device to the candidate slot. It returns an error
// only when the state cannot be persisted; device failures are recorded on
// the device.
func (c *Controller) switchDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.State = DeviceSwitching
	rec.Attempted = true
	rec.Reason = ""
	rec.Failed, rec.Layer = false, 0
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	if bs, ok := c.Health.(BaselineSource); ok && rec.Baseline == nil && r.Active != "" {
		if m, err := bs.Baseline(ctx, r, []DeviceRef{rec.DeviceRef}); err == nil && m[rec.ID] != nil {
			rec.Baseline = m[rec.ID]
		}
	}
	if err := c.routeActive(ctx, r, rec); err != nil {
		return err
	}
	if err := c.intent(ctx, r, rec.Name, "switch", fmt.Sprintf("slot %s -> %s", slotName(r.Active), r.Candidate)); err != nil {
		return err
	}
	start := c.Clock.Now()
	err := c.clusterCall(ctx, "switching device "+rec.Name, func() error {
		return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, r.Active, switchValue(r))
	})
	now := c.Clock.Now()
	var cpe *ControlPlaneError
	switch {
	case err == nil:
		rec.State = DeviceVerifying
		rec.SwitchedAt = now
		c.emitDevice(r, rec, "switch", "ok", fmt.Sprintf("switched in %s", now.Sub(start).Round(time.Millisecond)))
	case errors.Is(err, ErrDeviceOffline):
		// Not a failure: the device is tracked and caught up later. If
		// the metadata did reach it, take it back so that it does not
		// come back on an unverified version.
		rec.State = DeviceSkippedOffline
		rec.Reason = "offline: " + err.Error()
		c.emitDevice(r, rec, "switch", "skipped-offline", err.Error())
		if rerr := c.restoreDevice(ctx, r, rec); rerr == nil {
			rec.Attempted = false
		}
	case ctx.Err() != nil:
		// Interrupted: leave it in "switching"; a resumed controller
		// re-runs the (idempotent) switch.
		return ctx.Err()
	case errors.Is(err, ErrLockLost):
		// I8: the fence stopped the switch partway; this controller acts
		// no more (no restore, no record). The device stays "switching"
		// and the next holder redoes the (idempotent) switch.
		return err
	case errors.As(err, &cpe):
		// I5: not the device's fault. Put it back if the control plane
		// lets us; otherwise it stays "switching" and the (idempotent)
		// switch is redone when the rollout is resumed.
		c.emitDevice(r, rec, "switch", "control-plane-error", err.Error())
		if rerr := c.restoreDevice(ctx, r, rec); rerr == nil {
			rec.State = DevicePending
			rec.Attempted = false
			rec.Reason = "not switched: " + err.Error()
		} else {
			rec.Reason = "switch interrupted: " + err.Error() + "; it is redone when the rollout resumes"
		}
		if serr := c.saveDevice(ctx, r, rec); serr != nil {
			return serr
		}
		return err
	default:
		// Failed partway: put the device back on the old slot at once.
		c.emitDevice(r, rec, "switch", "error", err.Error())
		rerr := c.restoreDevice(ctx, r, rec)
		rec.State = DeviceFailed
		rec.Failed = true
		rec.Layer = 0
		if rerr != nil {
			rec.Reason = fmt.Sprintf("switch failed: %v; restoring the old slot also failed: %v", err, rerr)
			c.emitDevice(r, rec, "restore", "error", rerr.Error())
		} else {
			rec.Reason = fmt.Sprintf("switch failed: %v; restored to slot %s", err, slotName(r.Active))
			rec.Attempted = false
			c.emitDevice(r, rec, "restore", "ok", "")
		}
	}
	return c.saveDevice(ctx, r, rec)
}

// restoreDevice puts a device whose switch did not complete back on the
// active slot (one attempt: the caller decides what a failure means).
func (c *Controller) restoreDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	if err := c.fenced("restoring device " + rec.Name); err != nil {
		return err
	}
	return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
}
