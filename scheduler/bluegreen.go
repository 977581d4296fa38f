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

// finishBlueGreen stops the old allocations of a confirmed blue-green
// rollout: every switched device keeps only the candidate slot.
func (c *Controller) finishBlueGreen(ctx context.Context, r *Rollout) error {
	if candidateValue(r) == r.Candidate {
		return nil
	}
	var todo []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.State == DeviceHealthy || rec.State == DeviceCaughtUp {
			todo = append(todo, rec)
		}
	}
	return c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error {
		c.emitDevice(r, rec, "release-standby", "intent", fmt.Sprintf("stopping the standby slot %s", r.Active))
		err := c.clusterCall(ctx, "releasing the standby slot on "+rec.Name, func() error {
			return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Candidate)
		})
		switch {
		case err == nil:
			c.emitDevice(r, rec, "release-standby", "ok", "")
		case errors.Is(err, ErrDeviceOffline):
			// It keeps both slots until it returns; both run a whole
			// version, never half of one.
			c.emitDevice(r, rec, "release-standby", "skipped-offline", err.Error())
		default:
			c.emitDevice(r, rec, "release-standby", "error", err.Error())
			return fmt.Errorf("stopping the standby slot on %s: %w", rec.Name, err)
		}
		return nil
	})
}
