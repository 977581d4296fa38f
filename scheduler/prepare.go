package scheduler

import (
	"context"
	"fmt"
)

// prepare plans the stages from the registry and registers the candidate
// slot job. Nothing has touched a device yet, so it is safe to redo.
func (c *Controller) prepare(ctx context.Context, r *Rollout) error {
	devices, err := c.Registry.Devices(ctx, c.Policy)
	if err != nil {
		return fmt.Errorf("reading the device registry for %q: %w", r.App, err)
	}
	plan, err := PlanRollout(c.Policy, devices)
	if err != nil {
		return fmt.Errorf("planning %q: %w", r.App, err)
	}
	r.Stages = r.Stages[:0]
	seen := map[string]bool{}
	for i, st := range plan.Stages {
		r.Stages = append(r.Stages, StageRecord{
			Name: st.Name, Canary: st.Canary, Percent: st.Percent, Soak: st.Soak,
			Devices: len(st.Devices), Offline: st.Offline,
		})
		for _, d := range st.Devices {
			seen[d.ID] = true
			rec := r.Devices[d.ID]
			if rec == nil {
				rec = &DeviceRecord{}
				r.Devices[d.ID] = rec
			}
			idx := rec.Index
			*rec = DeviceRecord{
				DeviceRef: DeviceRef{ID: d.ID, Name: d.Name, Class: d.Class},
				Stage:     i, State: DevicePending, UpdatedAt: c.Clock.Now(), Index: idx,
			}
			if err := c.saveDevice(ctx, r, rec); err != nil {
				return err
			}
		}
	}
	for id, rec := range r.Devices {
		if !seen[id] {
			// Planned by an earlier attempt at PREPARE but no longer in
			// the fleet: keep the record, out of every stage.
			rec.Stage = -1
			rec.State = DevicePending
			rec.Reason = "no longer in the fleet"
			if err := c.saveDevice(ctx, r, rec); err != nil {
				return err
			}
		}
	}
	r.Excluded = r.Excluded[:0]
	for _, e := range plan.Excluded {
		r.Excluded = append(r.Excluded, ExcludedRef{DeviceRef: DeviceRef{ID: e.ID, Name: e.Name, Class: e.Class}, Reason: e.Reason})
	}
	for _, w := range plan.Warnings {
		c.emit(r, "", "plan", "warning", w)
	}
	c.emit(r, "", "register-candidate", "intent", fmt.Sprintf("registering slot job %s-%s with version %s", r.App, r.Candidate, r.Version))
	if err := c.Cluster.PrepareCandidate(ctx, r); err != nil {
		c.emit(r, "", "register-candidate", "error", err.Error())
		return fmt.Errorf("registering the candidate slot job %s-%s: %w", r.App, r.Candidate, err)
	}
	c.emit(r, "", "register-candidate", "ok", "")
	c.decide(r, DecisionPlan, fmt.Sprintf("%d devices in %d stages (%d excluded)", plan.Deployable, len(plan.Stages), len(plan.Excluded)),
		map[string]float64{"fleet_total": float64(plan.FleetTotal), "deployable": float64(plan.Deployable), "excluded": float64(len(plan.Excluded))})
	r.Phase = PhaseValidate
	return c.save(ctx, r)
}

// validate checks the preconditions a rollout needs before it touches a
// device.
func (c *Controller) validate(ctx context.Context, r *Rollout) error {
	if len(r.Stages) == 0 || r.Stages[0].Devices == 0 {
		return c.halt(ctx, r, Halt{Reason: "the fleet has no deployable device for the canary", Fix: "check the fleet selector and the device registry", Remedy: RemedyResume})
	}
	total, offline := 0, 0
	for _, st := range r.Stages {
		total += st.Devices
		offline += st.Offline
	}
	if max := c.Policy.Offline.MaxOfflinePercent; max > 0 && total > 0 {
		if pct := percent(offline, total); pct > max {
			return c.halt(ctx, r, Halt{
				Reason: fmt.Sprintf("%d of %d devices (%.1f%%) are offline, above offline.max_offline_percent = %g", offline, total, pct, max),
				Fix:    "bring devices back or raise the limit", Remedy: RemedyResume,
			})
		}
	}
	r.Phase = PhaseCanary
	r.Stage = 0
	r.Step = StepSwitching
	c.decide(r, DecisionValidated, "preconditions met; starting the canary", nil)
	return c.save(ctx, r)
}
