package scheduler

import (
	"context"
	"errors"
	"fmt"
)

// catchUpSwitch switches the devices that were offline when their stage ran
// and are back now; they are then verified through the same gate.
func (c *Controller) catchUpSwitch(ctx context.Context, r *Rollout) error {
	if !c.Policy.Offline.CatchUp || c.Health == nil {
		return nil
	}
	var cands []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.State == DeviceSkippedOffline && rec.Stage >= 0 && (rec.Stage < r.Stage || (rec.Stage == r.Stage && r.Step != StepSwitching)) {
			cands = append(cands, rec)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	refs := make([]DeviceRef, len(cands))
	for i, rec := range cands {
		refs[i] = rec.DeviceRef
	}
	health, err := c.Health.Health(ctx, r, refs)
	if err != nil {
		return nil // inconclusive: try again at the next sample
	}
	for _, rec := range cands {
		if !health[rec.ID].Online {
			continue
		}
		if ctl := c.controls.current(); ctl.Pause != nil || ctl.Rollback != nil {
			return nil
		}
		rec.CatchUp = true
		c.emitDevice(r, rec, "catch-up", "intent", "back online; switching it through the same gate")
		if err := c.switchDevice(ctx, r, rec); err != nil {
			return err
		}
	}
	return nil
}

// quarantineCaughtUpFailures rolls back and quarantines caught-up devices
// that failed their gate; they do not count against the current wave.
func (c *Controller) quarantineCaughtUpFailures(ctx context.Context, r *Rollout) error {
	for _, rec := range r.SortedDevices() {
		if rec.CatchUp && rec.State == DeviceFailed && rec.Stage != r.Stage {
			if err := c.quarantine(ctx, r, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// CatchUp handles, after a run finished, the devices it skipped because
// they were offline: on a run that succeeded, each device that is back is
// switched and verified through the same gate (caught-up, or quarantined
// when it fails); on a run that was rolled back, devices that may still
// hold the candidate are taken back. With wait set it keeps going until
// every skipped device is handled or ctx ends.
func (c *Controller) CatchUp(ctx context.Context, wait bool) (*Rollout, error) {
	c.defaults()
	r, err := c.Store.Load(ctx, c.Policy.Name)
	if err != nil {
		return nil, fmt.Errorf("loading the state of rollout %q: %w", c.Policy.Name, err)
	}
	if r == nil {
		return nil, fmt.Errorf("no rollout named %q", c.Policy.Name)
	}
	if !r.Finished() {
		return r, fmt.Errorf("rollout %q is still running (%s): its controller catches devices up by itself", r.App, r.Phase)
	}
	c.controls.reset()
	rolledBack := r.Outcome == OutcomeRolledBack || r.Outcome == OutcomeRollbackIncomplete
	for {
		var skipped []*DeviceRecord
		for _, rec := range r.SortedDevices() {
			retry := rolledBack && rec.State == DeviceRollingBack
			standby := r.Outcome == OutcomeSucceeded && rec.StandbyHeld
			if (rec.State == DeviceSkippedOffline || retry || standby) && rec.Stage >= 0 {
				skipped = append(skipped, rec)
			}
		}
		if len(skipped) == 0 {
			return r, c.completeRollback(ctx, r)
		}
		refs := make([]DeviceRef, len(skipped))
		for i, rec := range skipped {
			refs[i] = rec.DeviceRef
		}
		health, err := c.Health.Health(ctx, r, refs)
		if err != nil {
			return r, fmt.Errorf("reading the health of skipped devices: %w", err)
		}
		var switched, restored []*DeviceRecord
		for _, rec := range skipped {
			if !health[rec.ID].Online {
				continue
			}
			if rec.StandbyHeld && r.Outcome == OutcomeSucceeded {
				if err := c.releaseStandby(ctx, r, rec); err != nil {
					return r, err
				}
				continue
			}
			if rolledBack {
				// Switching back is idempotent: a device that never left
				// the old slot is verified there like the others.
				if err := c.rollBackDevice(ctx, r, rec); err != nil {
					return r, err
				}
				restored = append(restored, rec)
				continue
			}
			rec.CatchUp = true
			if r.Outcome == OutcomeSucceeded && rec.Live != "" {
				// Blue-green after DONE: the switch stops the old slot
				// (no standby left to keep), so its live entry goes
				// until the candidate passed its gate.
				if err := c.route(ctx, r, rec, ""); err != nil {
					return r, err
				}
			}
			c.emitDevice(r, rec, "catch-up", "intent", "back online; switching it through the same gate")
			if err := c.switchDevice(ctx, r, rec); err != nil {
				return r, err
			}
			if rec.State == DeviceVerifying {
				switched = append(switched, rec)
			}
		}
		if err := c.verifyCaughtUp(ctx, r, switched); err != nil {
			return r, err
		}
		if r.Outcome == OutcomeSucceeded {
			// Blue-green: a device caught up after DONE takes the traffic
			// once it passed its gate.
			for _, rec := range switched {
				if rec.State == DeviceCaughtUp {
					if err := c.route(ctx, r, rec, r.Candidate); err != nil {
						return r, err
					}
				}
			}
		}
		if _, err := c.verifyRollback(ctx, r, restored); err != nil {
			return r, err
		}
		if !wait {
			return r, c.completeRollback(ctx, r)
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-c.Clock.After(c.SampleInterval):
		}
	}
}

// verifyCaughtUp soaks caught-up devices for their stage's soak and
// quarantines the ones that fail.
func (c *Controller) verifyCaughtUp(ctx context.Context, r *Rollout, recs []*DeviceRecord) error {
	if len(recs) == 0 {
		return nil
	}
	soak := c.Policy.Health.Grace
	for _, rec := range recs {
		if rec.Stage < len(r.Stages) && r.Stages[rec.Stage].Soak > soak {
			soak = r.Stages[rec.Stage].Soak
		}
	}
	until := c.Clock.Now().Add(soak)
	for {
		var live []*DeviceRecord
		for _, rec := range recs {
			if rec.State == DeviceVerifying || rec.State == DeviceCaughtUp {
				live = append(live, rec)
			}
		}
		now := c.Clock.Now()
		final := !now.Before(until)
		if final {
			// A device still starting gets until its health deadline.
			for _, rec := range live {
				if rec.State == DeviceVerifying && now.Before(rec.SwitchedAt.Add(c.HealthDeadline)) {
					final = false
				}
			}
		}
		// Caught-up devices stay under watch for the whole soak: a later
		// failure still fails them.
		if err := c.sampleDevices(ctx, r, live, final); err != nil {
			return err
		}
		for _, rec := range recs {
			if rec.State == DeviceFailed {
				if err := c.quarantine(ctx, r, rec); err != nil {
					return err
				}
			}
		}
		if final {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Clock.After(c.SampleInterval):
		}
	}
}

// quarantine rolls one failed device back and excludes it from later waves.
func (c *Controller) quarantine(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	reason := rec.Reason
	rec.State = DeviceRollingBack
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	if err := c.intent(ctx, r, rec.Name, "quarantine", reason); err != nil {
		return err
	}
	if r.Outcome != OutcomeSucceeded {
		// Blue-green: the old slot still runs beside the candidate (hot
		// standby): the traffic goes back to it first.
		if err := c.route(ctx, r, rec, r.Active); err != nil && (errors.Is(err, ErrLockLost) || ctx.Err() != nil) {
			return err
		}
	}
	if err := c.clusterCall(ctx, "rolling back failed device "+rec.Name, func() error {
		return c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
	}); err != nil {
		if errors.Is(err, ErrDeviceOffline) {
			rec.State = DeviceSkippedOffline
			rec.Reason = "failed (" + reason + ") and went offline before it could be rolled back; it will be rolled back when it returns"
			c.emitDevice(r, rec, "quarantine", "skipped-offline", err.Error())
			return c.saveDevice(ctx, r, rec)
		}
		c.emitDevice(r, rec, "quarantine", "error", err.Error())
		return fmt.Errorf("rolling back failed device %s: %w", rec.Name, err)
	}
	rec.State = DeviceQuarantined
	rec.Reason = reason
	rec.Attempted = false
	if err := c.Registry.Quarantine(ctx, rec.ID, fmt.Sprintf("failed rollout %s %s: %s", r.App, r.Version, reason)); err != nil {
		c.Logger.Named("controller").Warn("could not mark the device quarantined in the registry", "device", rec.Name, "error", err)
	}
	c.emitDevice(r, rec, "quarantine", "ok", "rolled back to slot "+slotName(r.Active)+" and quarantined")
	return c.saveDevice(ctx, r, rec)
}

// completeRollback turns a rollback-incomplete run into a rolled-back one
// once catch-up verified every device it had left unverified.
func (c *Controller) completeRollback(ctx context.Context, r *Rollout) error {
	if r.Outcome != OutcomeRollbackIncomplete {
		return nil
	}
	for _, rec := range r.Devices {
		if rec.Stage >= 0 && (rec.State == DeviceRollingBack || rec.State.OnCandidate()) {
			return nil
		}
	}
	r.Outcome = OutcomeRolledBack
	c.decide(r, DecisionRolledBack, fmt.Sprintf("catch-up verified the remaining devices: every reachable device is back on %s (slot %s)", versionName(r.PreviousVersion), slotName(r.Active)), nil)
	return c.save(ctx, r)
}
