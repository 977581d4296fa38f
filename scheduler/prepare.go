package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// prepare plans the stages from the registry and registers the candidate
// slot job. Nothing has touched a device yet, so it is safe to redo.
func (c *Controller) prepare(ctx context.Context, r *Rollout) error {
	devices, err := c.Registry.Devices(ctx, c.Policy)
	if err != nil {
		return fmt.Errorf("reading the device registry for %q: %w", r.App, err)
	}
	devices, fenced, err := c.reconcileCandidateSlot(ctx, r, devices)
	if err != nil {
		return err
	}
	plan, err := PlanRollout(c.Policy, devices)
	if err != nil {
		return fmt.Errorf("planning %q: %w", r.App, err)
	}
	r.Stages = r.Stages[:0]
	seen := make(map[string]bool, len(devices))
	// The records are written in batches (SaveDevices), in plan order.
	recs := make([]*DeviceRecord, 0, len(devices))
	for i, st := range plan.Stages {
		r.Stages = append(r.Stages, StageRecord{
			Name: st.Name, Canary: st.Canary, Percent: st.Percent, Soak: st.Soak,
			Devices: len(st.Devices), Offline: st.Offline,
		})
		for _, d := range st.Devices {
			rec := r.Devices[d.ID]
			if rec == nil {
				rec = &DeviceRecord{}
				r.Devices[d.ID] = rec
			}
			if !seen[d.ID] {
				recs = append(recs, rec) // once: one write per key in a batch
			}
			seen[d.ID] = true
			idx := rec.Index
			*rec = DeviceRecord{
				DeviceRef: DeviceRef{ID: d.ID, Name: d.Name, Class: d.Class},
				Stage:     i, State: DevicePending, UpdatedAt: c.Clock.Now(), Index: idx,
			}
		}
	}
	var gone []string
	for id := range r.Devices {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	slices.Sort(gone)
	for _, id := range gone {
		// Planned by an earlier attempt at PREPARE but no longer in the
		// fleet: keep the record, out of every stage.
		rec := r.Devices[id]
		rec.Stage = -1
		rec.State = DevicePending
		rec.Reason = "no longer in the fleet"
		recs = append(recs, rec)
	}
	if err := c.saveDevices(ctx, r, recs); err != nil {
		return err
	}
	r.Excluded = r.Excluded[:0]
	for _, e := range plan.Excluded {
		r.Excluded = append(r.Excluded, ExcludedRef{DeviceRef: DeviceRef{ID: e.ID, Name: e.Name, Class: e.Class}, Reason: e.Reason})
	}
	r.Excluded = append(r.Excluded, fenced...)
	for _, w := range plan.Warnings {
		c.emit(r, "", "plan", "warning", w)
	}
	// I3: the pre-flight checklist, before anything is registered. Any
	// unchecked item stops the rollout with its remedy.
	cl := c.preflight(ctx, r, plan)
	c.record(r, Decision{Kind: DecisionPreflight, Reason: checklistSummary(cl), Checklist: cl})
	if bad := cl.Unchecked(); len(bad) > 0 {
		var reasons, fixes []string
		for _, it := range bad {
			reasons = append(reasons, it.Name+": "+it.Detail)
			fixes = append(fixes, it.Fix)
		}
		return c.halt(ctx, r, Halt{
			Reason: "pre-flight checklist: " + strings.Join(reasons, "; "),
			Fix:    strings.Join(fixes, "; "),
			Remedy: RemedyResume,
		})
	}
	if c.BeforeCandidate != nil {
		if err := c.clusterCall(ctx, "preparing the release of "+r.App, func() error { return c.BeforeCandidate(ctx, r) }); err != nil {
			return err
		}
	}
	if err := c.intent(ctx, r, "", "register-candidate", fmt.Sprintf("registering slot job %s-%s with version %s", r.App, r.Candidate, r.Version)); err != nil {
		return err
	}
	if err := c.clusterCall(ctx, "registering the candidate of "+r.App, func() error { return c.Cluster.PrepareCandidate(ctx, r) }); err != nil {
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

// reconcileCandidateSlot enforces invariant I1 (gated placement): a device
// runs the candidate only after the controller switched it in this run.
// Registering the candidate slot job places it at once on every node whose
// slot metadata already names the candidate's colour (group B of a held
// a-b run, quarantined or excluded devices, leftovers of an earlier
// run), so before it is registered every such device is put back on the
// active slot. One that cannot be reached is fenced: it leaves the plan
// (excluded, with the reason) and the candidate job carries a constraint
// that keeps it off that node (Rollout.Fenced), until it is reconciled.
func (c *Controller) reconcileCandidateSlot(ctx context.Context, r *Rollout, devices []Device) ([]Device, []ExcludedRef, error) {
	r.Fenced = r.Fenced[:0]
	var fenced []ExcludedRef
	var reconciled []*DeviceRecord
	keep := devices[:0:0]
	for _, d := range devices {
		value := d.Apps[r.App].Slot
		if !SlotHolds(value, r.Candidate) {
			keep = append(keep, d)
			continue
		}
		ref := DeviceRef{ID: d.ID, Name: d.Name, Class: d.Class}
		if err := c.intent(ctx, r, d.Name, "reconcile", fmt.Sprintf("slot metadata %q names the candidate colour %s; putting the device back on slot %s before the candidate is registered", value, r.Candidate, slotName(r.Active))); err != nil {
			return nil, nil, err
		}
		err := c.clusterCall(ctx, "reconciling the slot of device "+d.Name, func() error {
			return c.Cluster.SwitchDevice(ctx, ref, value, r.Active)
		})
		switch {
		case err == nil:
			c.emit(r, d.Name, "reconcile", "ok", "back on slot "+slotName(r.Active))
			d.Apps = copyApps(d.Apps)
			d.Apps[r.App] = AppSlot{Slot: r.Active}
			keep = append(keep, d)
			reconciled = append(reconciled, &DeviceRecord{DeviceRef: ref, RollbackAt: c.Clock.Now()})
		case errors.Is(err, ErrDeviceOffline):
			reason := fmt.Sprintf("offline with slot metadata %q naming the candidate colour; the candidate job is kept off it until it returns and is reconciled", value)
			c.emit(r, d.Name, "reconcile", "fenced", reason)
			r.Fenced = append(r.Fenced, ref)
			fenced = append(fenced, ExcludedRef{DeviceRef: ref, Reason: reason})
		default:
			c.emit(r, d.Name, "reconcile", "error", err.Error())
			return nil, nil, fmt.Errorf("reconciling device %s before registering the candidate of %s: %w", d.Name, r.App, err)
		}
	}
	c.awaitActive(ctx, r, reconciled)
	return keep, fenced, nil
}

// SlotHolds reports whether a slot metadata value ("blue", "green",
// "blue,green") names the colour.
func SlotHolds(value, colour string) bool {
	if colour == "" {
		return false
	}
	for _, v := range strings.Split(value, ",") {
		if strings.TrimSpace(v) == colour {
			return true
		}
	}
	return false
}

func copyApps(m map[string]AppSlot) map[string]AppSlot {
	out := make(map[string]AppSlot, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checklistSummary is a checklist in one line.
func checklistSummary(cl Checklist) string {
	bad := cl.Unchecked()
	if len(bad) == 0 {
		return fmt.Sprintf("pre-flight checklist: all %d items checked", len(cl))
	}
	names := make([]string, len(bad))
	for i, it := range bad {
		names[i] = it.Name
	}
	return fmt.Sprintf("pre-flight checklist: %d of %d items unchecked (%s): STOP", len(bad), len(cl), strings.Join(names, ", "))
}

// awaitActive waits, up to the health deadline, until the reconciled
// devices run the active slot with its checks passing, as a rollback is
// verified; the pre-flight checklist then judges them (one that did not
// come back healthy stops the rollout there).
func (c *Controller) awaitActive(ctx context.Context, r *Rollout, recs []*DeviceRecord) {
	if len(recs) == 0 {
		return
	}
	view, policy := restoredView(r, c.Policy)
	refs := make([]DeviceRef, len(recs))
	for i, rec := range recs {
		refs[i] = rec.DeviceRef
	}
	deadline := c.Clock.Now().Add(c.HealthDeadline)
	for ctx.Err() == nil {
		health, err := c.Health.Health(ctx, view, refs)
		now := c.Clock.Now()
		if err == nil {
			pending := 0
			for _, rec := range recs {
				h := health[rec.ID]
				if h.Online && c.restoreVerdict(r, policy, rec, h, now).Status != VerdictPass {
					pending++
				}
			}
			if pending == 0 {
				return
			}
		}
		if !now.Before(deadline) {
			return
		}
		select {
		case <-ctx.Done():
		case <-c.Clock.After(c.SampleInterval):
		}
	}
}
