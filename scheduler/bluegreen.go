package scheduler

import (
	"context"
	"errors"
	"fmt"
)

// candidateValue is the slot metadata a switched device carries: the
// candidate's colour, or with blue-green both colours, so that the old
// allocation keeps running beside the new one (hot standby) until CONFIRM.
func candidateValue(r *Rollout) string {
	if r.Strategy == StrategyBlueGreen && r.Active != "" {
		return SlotBlue + "," + SlotGreen
	}
	return r.Candidate
}

// switchValue is the slot value a device is switched to: candidateValue
// while the run is open; once it is confirmed there is no standby to keep,
// so a device caught up after DONE moves to the candidate alone.
func switchValue(r *Rollout) string {
	if r.Outcome == OutcomeSucceeded {
		return r.Candidate
	}
	return candidateValue(r)
}

// finishBlueGreen stops the old allocations of a confirmed blue-green
// rollout: every switched device keeps only the candidate slot. A device
// offline at that moment keeps StandbyHeld and is released by catch-up
// when it returns.
func (c *Controller) finishBlueGreen(ctx context.Context, r *Rollout) error {
	if candidateValue(r) == r.Candidate {
		return nil
	}
	var todo []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.State == DeviceHealthy || rec.State == DeviceCaughtUp || rec.StandbyHeld {
			todo = append(todo, rec)
		}
	}
	if err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error { return c.releaseStandby(ctx, r, rec) }); err != nil {
		return err
	}
	return ctx.Err()
}

// releaseStandby stops the old slot beside the candidate on one device.
func (c *Controller) releaseStandby(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	if err := c.intent(ctx, r, rec.Name, "release-standby", fmt.Sprintf("stopping the standby slot %s", r.Active)); err != nil {
		return err
	}
	err := c.clusterCall(ctx, "releasing the standby slot on "+rec.Name, func() error {
		return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Candidate)
	})
	switch {
	case err == nil:
		rec.StandbyHeld = false
		c.emitDevice(r, rec, "release-standby", "ok", "")
	case errors.Is(err, ErrDeviceOffline):
		// It keeps both slots until it returns (both run a whole
		// version, never half of one); catch-up releases it then.
		rec.StandbyHeld = true
		c.emitDevice(r, rec, "release-standby", "skipped-offline", err.Error())
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		c.emitDevice(r, rec, "release-standby", "error", err.Error())
		return fmt.Errorf("stopping the standby slot on %s: %w", rec.Name, err)
	}
	return c.saveDevice(ctx, r, rec)
}
