package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// DecisionTrafficBack records a blue-green rollback's traffic back on the
// old slot, with the time it took from the trigger.
const DecisionTrafficBack DecisionKind = "traffic-back"

// Blue-green keeps a device's old allocation running beside the candidate
// (hot standby) until CONFIRM and moves the device's *traffic*, not its
// allocations: the Cluster's TrafficRouter keeps one live entry per device
// and names the slot instance consumers are sent to. A device switch moves
// the traffic to the candidate only once the candidate passed its checks;
// a rollback moves it back first (one write per device, seconds), then
// stops the candidate; CONFIRM releases the standby only where the traffic
// is on the candidate.

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

// router is the traffic switch of a blue-green run, nil otherwise (and
// when the cluster has none: the checklist refuses such a run).
func (c *Controller) router(r *Rollout) TrafficRouter {
	if r.Strategy != StrategyBlueGreen {
		return nil
	}
	tr, _ := c.Cluster.(TrafficRouter)
	return tr
}

// route makes slot the live instance of one device (an intent first, then
// one write). A failure is returned, never a verdict on the device.
func (c *Controller) route(ctx context.Context, r *Rollout, rec *DeviceRecord, slot string) error {
	tr := c.router(r)
	if tr == nil || rec.Live == slot && slot != "" {
		return nil
	}
	what := "traffic to slot " + slotName(slot)
	if slot == "" {
		what = "withdrawing the traffic entry"
	}
	if err := c.intent(ctx, r, rec.Name, "traffic", what); err != nil {
		return err
	}
	start := c.Clock.Now()
	err := c.clusterCall(ctx, "moving the traffic of "+rec.Name+" to slot "+slotName(slot), func() error {
		return tr.RouteTraffic(ctx, r, rec.DeviceRef, slot)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.emitDevice(r, rec, "traffic", "error", err.Error())
		return fmt.Errorf("moving the traffic of %s to slot %s: %w", rec.Name, slotName(slot), err)
	}
	rec.Live = slot
	c.emitDevice(r, rec, "traffic", "ok", fmt.Sprintf("live: slot %s (%s)", slotName(slot), c.Clock.Now().Sub(start).Round(time.Millisecond)))
	return c.saveDevice(ctx, r, rec)
}

// routeActive puts a device's live entry on the active slot before its
// switch, so that consumers select the old instance, never the standby,
// from the first moment both run. A failure is logged: the device is
// switched anyway and its traffic moves once the candidate passed.
func (c *Controller) routeActive(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	if c.router(r) == nil || r.Active == "" || rec.Live == r.Active || !SlotHolds(switchValue(r), r.Active) {
		// No standby in this switch (a first install, or a device caught
		// up after DONE): nothing to route to before the candidate passed.
		return nil
	}
	err := c.route(ctx, r, rec, r.Active)
	if err != nil && !errors.Is(err, ErrLockLost) && ctx.Err() == nil {
		c.Logger.Named("bluegreen").Warn("could not route the traffic to the active slot before the switch", "rollout", r.App, "device", rec.Name, "error", err)
		return nil
	}
	return err
}

// shiftTraffic moves the traffic of switched devices to the candidate once
// each passed its checks: it reads their health until every one of them
// passed (routed), failed, went offline or reached its health deadline
// (those keep the traffic on the old slot; the soak judges them). Devices
// already healthy are routed at once.
func (c *Controller) shiftTraffic(ctx context.Context, r *Rollout, recs []*DeviceRecord) error {
	if c.router(r) == nil || c.Health == nil {
		return nil
	}
	given := map[string]bool{}
	for {
		var wait []*DeviceRecord
		for _, rec := range recs {
			if rec.Live == r.Candidate || given[rec.ID] {
				continue
			}
			switch rec.State {
			case DeviceHealthy, DeviceCaughtUp:
				if err := c.route(ctx, r, rec, r.Candidate); err != nil {
					return err
				}
			case DeviceVerifying:
				wait = append(wait, rec)
			}
		}
		if len(wait) == 0 {
			return nil
		}
		if ctl := c.controls.current(); ctl.Rollback != nil || ctl.Pause != nil {
			return nil
		}
		refs := make([]DeviceRef, len(wait))
		for i, rec := range wait {
			refs[i] = rec.DeviceRef
		}
		health, err := c.Health.Health(ctx, r, refs)
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		now := c.Clock.Now()
		var pass []*DeviceRecord
		for _, rec := range wait {
			late := !now.Before(rec.SwitchedAt.Add(c.HealthDeadline))
			if err != nil {
				// No evidence is not health: the traffic stays.
				given[rec.ID] = late
				continue
			}
			h := health[rec.ID]
			v := c.Gate.Evaluate(c.Policy, rec, h, now)
			switch {
			case v.Status == VerdictPass:
				pass = append(pass, rec)
			case v.Status == VerdictFail || !h.Online || late:
				given[rec.ID] = true
				c.emitDevice(r, rec, "traffic", "kept", "the candidate did not pass its checks; the traffic stays on slot "+slotName(r.Active))
			}
		}
		if err := c.forEach(ctx, pass, nil, func(rec *DeviceRecord) error { return c.route(ctx, r, rec, r.Candidate) }); err != nil {
			return err
		}
		if len(pass) == len(wait) {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Clock.After(c.SampleInterval):
		case <-c.controls.wake():
		}
	}
}

// trafficBack moves the traffic of the devices a rollback covers back to
// the active slot (withdraws it after a first install) before anything
// else is done to them, and records when it was back.
func (c *Controller) trafficBack(ctx context.Context, r *Rollout, recs []*DeviceRecord) error {
	if c.router(r) == nil {
		return nil
	}
	var todo []*DeviceRecord
	for _, rec := range recs {
		if rec.Live != "" && rec.Live != r.Active || r.Active == "" && rec.Live != "" {
			todo = append(todo, rec)
		}
	}
	var mu sync.Mutex
	var failed []string
	err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error {
		if err := c.route(ctx, r, rec, r.Active); err != nil {
			if errors.Is(err, ErrLockLost) || ctx.Err() != nil {
				return err
			}
			// The candidate is stopped next anyway: its instance leaves
			// the catalog and takes no traffic.
			mu.Lock()
			failed = append(failed, rec.Name)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(todo) > 0 && r.RollbackTimes != nil && r.RollbackTimes.TrafficBackAt.IsZero() {
		r.RollbackTimes.TrafficBackAt = c.Clock.Now()
		r.RollbackTimes.Devices = len(todo)
		reason := fmt.Sprintf("traffic back on slot %s on %d device(s) %s after the rollback's trigger", slotName(r.Active), len(todo)-len(failed),
			r.RollbackTimes.TrafficBack().Round(time.Millisecond))
		if len(failed) > 0 {
			reason += fmt.Sprintf("; not moved on %v (their candidate is stopped next)", failed)
		}
		c.decide(r, DecisionTrafficBack, reason, map[string]float64{"traffic_back_seconds": r.RollbackTimes.TrafficBack().Seconds(), "devices": float64(len(todo))})
		return c.save(ctx, r)
	}
	return nil
}

// finishBlueGreen stops the old allocations of a confirmed blue-green
// rollout: every switched device keeps only the candidate slot, and its
// traffic is on the candidate first. A device offline at that moment keeps
// StandbyHeld and is released by catch-up when it returns; a device
// switched after DONE (caught up) never had a standby.
func (c *Controller) finishBlueGreen(ctx context.Context, r *Rollout) error {
	var todo []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		if rec.State == DeviceHealthy || rec.State == DeviceCaughtUp || rec.StandbyHeld {
			todo = append(todo, rec)
		}
	}
	// The live entries are Consul's: they move even while a device is
	// unreachable.
	if err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error { return c.route(ctx, r, rec, r.Candidate) }); err != nil {
		return err
	}
	if candidateValue(r) == r.Candidate {
		return ctx.Err()
	}
	if err := c.forEach(ctx, todo, nil, func(rec *DeviceRecord) error { return c.releaseStandby(ctx, r, rec) }); err != nil {
		return err
	}
	return ctx.Err()
}

// releaseStandby stops the old slot beside the candidate on one device.
func (c *Controller) releaseStandby(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	if err := c.route(ctx, r, rec, r.Candidate); err != nil {
		return err
	}
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
