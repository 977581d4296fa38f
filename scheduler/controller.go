package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Controller drives one rollout through its lifecycle (see Phase for the
// state machine). It is the only writer of the rollout's state: every
// transition is persisted with check-and-set before the next action, and
// every device action is recorded as an intent before it is taken and as an
// outcome after, so a controller killed at any point can be started again
// and finish with every device on exactly one slot.
//
// The controller only reacts to verdicts; it never talks to Nomad or Consul
// itself (Cluster, HealthSource, Store and Registry do).
type Controller struct {
	Policy   *Policy
	Cluster  Cluster
	Health   HealthSource
	Gate     Gate
	Store    Store
	Registry Registry
	Clock    Clock
	Logger   hclog.Logger

	// Actor is who runs the controller (user@host), recorded in decisions.
	Actor string
	// AutoApprove skips the wait for a human after the canary (apply
	// -auto-approve); the approval is still recorded, with this actor.
	AutoApprove bool
	// SampleInterval is how often health is sampled during a soak.
	SampleInterval time.Duration
	// HealthDeadline is how long after its switch a device may take to
	// become healthy before it is failed; default grace + 60s.
	HealthDeadline time.Duration
	// SaveRetry bounds how long a failing state write is retried before the
	// controller gives up (the devices stay consistent: the intent was
	// written before acting).
	SaveRetry time.Duration
	// NewID names a new run; default: r<UTC timestamp>.
	NewID func(now time.Time) string
	// OnEvent receives every action and decision as it happens (the CLI's
	// live view and the audit trail). It is called synchronously.
	OnEvent func(Event)

	mu       sync.Mutex
	controls Controls
	ctrlCh   chan struct{}
	// series are the canary's metric samples during its soak (trend
	// detection); degraded is set when a degradation persisted.
	series   map[string]*metricSeries
	degraded string
}

// Event is one thing the controller did or decided. Events with Outcome
// "intent" are emitted before an action, the others after it.
type Event struct {
	Time    time.Time `json:"time"`
	Rollout string    `json:"rollout"`
	RunID   string    `json:"run_id"`
	Phase   Phase     `json:"phase"`
	Stage   string    `json:"stage,omitempty"`
	Device  string    `json:"device,omitempty"`
	Actor   string    `json:"actor,omitempty"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// ErrHalted is returned by Run when the rollout stopped and needs an
// operator (for example a wave was rolled back with scope "wave").
var ErrHalted = errors.New("rollout halted")

// ErrNothingToDo is returned when the release is already the active version.
var ErrNothingToDo = errors.New("release is already the active version")

func (c *Controller) defaults() {
	if c.Clock == nil {
		c.Clock = RealClock{}
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.Gate == nil {
		c.Gate = DefaultGate{}
	}
	if c.SampleInterval <= 0 {
		c.SampleInterval = 2 * time.Second
	}
	if c.HealthDeadline <= 0 {
		c.HealthDeadline = c.Policy.Health.Grace + 60*time.Second
	}
	if c.SaveRetry <= 0 {
		c.SaveRetry = 30 * time.Second
	}
	if c.NewID == nil {
		c.NewID = func(now time.Time) string {
			return "r" + now.UTC().Format("20060102T150405")
		}
	}
	if c.Actor == "" {
		c.Actor = "fleetplan"
	}
}

// Run starts a new run of the rollout, or resumes the one in progress, and
// drives it until it is done, rolled back or halted, or ctx ends. It returns
// the run's final state.
func (c *Controller) Run(ctx context.Context) (*Rollout, error) {
	c.defaults()
	log := c.Logger.Named("controller").With("rollout", c.Policy.Name)

	r, err := c.Store.Load(ctx, c.Policy.Name)
	if err != nil {
		return nil, fmt.Errorf("loading the state of rollout %q: %w", c.Policy.Name, err)
	}
	if r != nil && !r.Finished() {
		if r.Version != c.Policy.Release.Version {
			return r, fmt.Errorf("rollout %q is in progress with version %s (run %s); finish it or roll it back (`fleetplan rollback %s`) before applying version %s",
				r.App, r.Version, r.ID, r.App, c.Policy.Release.Version)
		}
		log.Info("resuming rollout", "run", r.ID, "phase", r.Phase, "stage", r.Stage, "step", r.Step)
		c.emit(r, "", "resume", "ok", fmt.Sprintf("resumed in %s", describePosition(r)))
	} else {
		r, err = c.start(ctx)
		if err != nil {
			return r, err
		}
	}

	// Read the operators' requests once before acting (a rollback asked
	// for while no controller ran is carried out first), then follow them.
	ctl, ctlIdx, err := c.Store.Controls(ctx, c.Policy.Name, 0, 0)
	if err != nil {
		return r, fmt.Errorf("reading operator requests of %q: %w", c.Policy.Name, err)
	}
	c.mu.Lock()
	c.controls = ctl
	c.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.ctrlCh = make(chan struct{}, 1)
	go c.watchControls(cctx, log, ctlIdx)

	for !r.Finished() {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if ctl := c.currentControls(); ctl.Rollback != nil && r.Phase != PhaseRollingBack {
			if err := c.manualRollback(ctx, r, ctl.Rollback); err != nil {
				return r, err
			}
			continue
		}
		if r.Halted != "" && r.Phase != PhaseRollingBack {
			// A halted rollout waits for an operator: resume retries,
			// rollback takes everything back.
			if err := c.waitHalted(ctx, r); err != nil {
				return r, err
			}
			continue
		}
		var err error
		switch r.Phase {
		case PhasePrepare:
			err = c.prepare(ctx, r)
		case PhaseValidate:
			err = c.validate(ctx, r)
		case PhaseCanary, PhaseWave:
			err = c.runStage(ctx, r)
		case PhaseAwaitingApproval:
			err = c.awaitApproval(ctx, r)
		case PhaseConfirm:
			err = c.confirm(ctx, r)
		case PhaseRollingBack:
			err = c.rollBack(ctx, r)
		case PhaseDone:
			r.Outcome = OutcomeSucceeded
		default:
			err = fmt.Errorf("rollout %q is in an unknown phase %q", r.App, r.Phase)
		}
		if err != nil {
			if errors.Is(err, ErrHalted) {
				return r, err
			}
			return r, err
		}
	}
	return r, nil
}

// start creates a new run in PREPARE.
func (c *Controller) start(ctx context.Context) (*Rollout, error) {
	now := c.Clock.Now()
	active, err := c.Store.ActiveSlot(ctx, c.Policy.Name)
	if err != nil {
		return nil, fmt.Errorf("reading the active slot of %q: %w", c.Policy.Name, err)
	}
	r := &Rollout{
		App:        c.Policy.Name,
		ID:         c.NewID(now),
		Version:    c.Policy.Release.Version,
		Strategy:   c.Policy.Strategy,
		PolicyFile: c.Policy.File,
		Phase:      PhasePrepare,
		StartedAt:  now,
		UpdatedAt:  now,
		Devices:    map[string]*DeviceRecord{},
	}
	if active != nil && active.Slot != "" {
		if active.Version == c.Policy.Release.Version {
			return nil, fmt.Errorf("%w: %s already runs %s in slot %s", ErrNothingToDo, c.Policy.Name, active.Version, active.Slot)
		}
		r.Active = active.Slot
		r.PreviousVersion = active.Version
	}
	r.Candidate = OtherSlot(r.Active)
	if prev, err := c.Store.Load(ctx, c.Policy.Name); err == nil && prev != nil {
		// The previous run is finished (Run checked): keep it in the
		// history, then take its place.
		if err := c.Store.Archive(ctx, prev); err != nil {
			return nil, fmt.Errorf("archiving run %s of %q: %w", prev.ID, prev.App, err)
		}
		r.Index = prev.Index
	}
	if err := c.Store.ClearControls(ctx, r.App); err != nil {
		return nil, fmt.Errorf("clearing operator requests of %q: %w", r.App, err)
	}
	c.decide(r, "start", fmt.Sprintf("rollout of %s %s started by %s (candidate slot %s, active slot %s)", r.App, r.Version, c.Actor, r.Candidate, slotName(r.Active)), nil)
	if err := c.save(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}

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
	c.decide(r, "plan", fmt.Sprintf("%d devices in %d stages (%d excluded)", plan.Deployable, len(plan.Stages), len(plan.Excluded)),
		map[string]float64{"fleet_total": float64(plan.FleetTotal), "deployable": float64(plan.Deployable), "excluded": float64(len(plan.Excluded))})
	r.Phase = PhaseValidate
	return c.save(ctx, r)
}

// validate checks the preconditions a rollout needs before it touches a
// device.
func (c *Controller) validate(ctx context.Context, r *Rollout) error {
	if len(r.Stages) == 0 || r.Stages[0].Devices == 0 {
		return c.halt(ctx, r, "the fleet has no deployable device for the canary (check the selector and `fleetplan registry list`)")
	}
	total, offline := 0, 0
	for _, st := range r.Stages {
		total += st.Devices
		offline += st.Offline
	}
	if max := c.Policy.Offline.MaxOfflinePercent; max > 0 && total > 0 {
		if pct := percent(offline, total); pct > max {
			return c.halt(ctx, r, fmt.Sprintf("%d of %d devices (%.1f%%) are offline, above offline.max_offline_percent = %g; bring devices back or raise the limit, then `fleetplan resume %s`",
				offline, total, pct, max, r.App))
		}
	}
	r.Phase = PhaseCanary
	r.Stage = 0
	r.Step = StepSwitching
	c.decide(r, "validated", "preconditions met; starting the canary", nil)
	return c.save(ctx, r)
}

// runStage runs the current stage's remaining steps.
func (c *Controller) runStage(ctx context.Context, r *Rollout) error {
	st := &r.Stages[r.Stage]
	if st.StartedAt.IsZero() {
		st.StartedAt = c.Clock.Now()
	}
	for {
		if ctl := c.currentControls(); ctl.Rollback != nil {
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
			c.decide(r, "soak", fmt.Sprintf("%s switched; soaking for %s", st.Name, st.Soak), nil)
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
				c.decide(r, "fail-fast", fmt.Sprintf("%s crossed the failure threshold during its soak", st.Name), nil)
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
	for _, rec := range c.stageDevices(r, r.Stage) {
		switch rec.State {
		case DevicePending, DeviceSwitching:
			todo = append(todo, rec)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	par := c.Policy.MaxParallel
	if par < 1 {
		par = 1
	}
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for _, rec := range todo {
		if ctl := c.currentControls(); ctl.Rollback != nil || ctl.Pause != nil {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(rec *DeviceRecord) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := c.switchDevice(ctx, r, rec); err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
			}
		}(rec)
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if ctl := c.currentControls(); ctl.Rollback != nil {
		return c.manualRollback(ctx, r, ctl.Rollback)
	}
	if ctl := c.currentControls(); ctl.Pause != nil {
		// Paused between two devices: wait, then finish the stage.
		if err := c.waitUnpaused(ctx, r); err != nil {
			return err
		}
		if r.Phase == PhaseRollingBack {
			return nil
		}
		return c.switchStage(ctx, r)
	}
	return nil
}

// switchDevice moves one device to the candidate slot. It returns an error
// only when the state cannot be persisted; device failures are recorded on
// the device.
func (c *Controller) switchDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.State = DeviceSwitching
	rec.Attempted = true
	rec.Reason = ""
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	if bs, ok := c.Health.(BaselineSource); ok && rec.Baseline == nil && r.Active != "" {
		if m, err := bs.Baseline(ctx, r, []DeviceRef{rec.DeviceRef}); err == nil && m[rec.ID] != nil {
			rec.Baseline = m[rec.ID]
		}
	}
	c.emitDevice(r, rec, "switch", "intent", fmt.Sprintf("slot %s -> %s", slotName(r.Active), r.Candidate))
	start := c.Clock.Now()
	err := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, r.Active, candidateValue(r))
	now := c.Clock.Now()
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
		if rerr := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active); rerr == nil {
			rec.Attempted = false
		}
	case ctx.Err() != nil:
		// Interrupted: leave it in "switching"; a resumed controller
		// re-runs the (idempotent) switch.
		return ctx.Err()
	default:
		// Failed partway: put the device back on the old slot at once.
		c.emitDevice(r, rec, "switch", "error", err.Error())
		rerr := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
		rec.State = DeviceFailed
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

// soak samples health until the soak ends or the stage crosses its failure
// threshold (it reports whether it did).
func (c *Controller) soak(ctx context.Context, r *Rollout) (bool, error) {
	st := &r.Stages[r.Stage]
	for {
		if ctl := c.currentControls(); ctl.Rollback != nil {
			return false, c.manualRollback(ctx, r, ctl.Rollback)
		}
		if err := c.catchUpSwitch(ctx, r); err != nil {
			return false, err
		}
		// Every device soaks for the whole soak after its own switch: one
		// caught up during its stage's soak extends it.
		for _, rec := range c.stageDevices(r, r.Stage) {
			if rec.State == DeviceVerifying && !rec.SwitchedAt.IsZero() {
				if end := rec.SwitchedAt.Add(st.Soak); end.After(st.SoakUntil) {
					st.SoakUntil = end
				}
			}
		}
		if err := c.sample(ctx, r, false); err != nil {
			return false, err
		}
		if err := c.quarantineCaughtUpFailures(ctx, r); err != nil {
			return false, err
		}
		if att, failed := stageCounts(c.stageDevices(r, r.Stage)); att > 0 && percent(failed, att) > c.Policy.Rollback.MaxFailurePercent {
			return true, nil
		}
		now := c.Clock.Now()
		if !now.Before(st.SoakUntil) && !c.awaitingVerdicts(r, now) {
			if st.Canary && c.series != nil {
				horizon := st.Soak
				if r.Stage+1 < len(r.Stages) {
					horizon = r.Stages[r.Stage+1].Soak
				}
				ds := DetectDegradation(c.Policy, r.Devices, c.series, now, horizon)
				if len(ds) > 0 && !st.Extended {
					// Extend once, sampling every second, to tell a
					// trend from noise.
					st.Extended = true
					st.SoakUntil = now.Add(st.Soak)
					c.decide(r, "soak-extended", fmt.Sprintf("%s soak extended by %s: %s", st.Name, st.Soak, describeDegradations(ds)),
						map[string]float64{"slope_per_s": ds[0].Slope, "projected": ds[0].Projected, "limit": ds[0].Limit})
					if err := c.save(ctx, r); err != nil {
						return false, err
					}
					continue
				}
				if len(ds) > 0 {
					c.degraded = "gradual degradation: " + describeDegradations(ds)
					c.decide(r, "degradation", c.degraded, map[string]float64{"slope_per_s": ds[0].Slope, "projected": ds[0].Projected, "limit": ds[0].Limit, "r2": ds[0].R2})
					return true, nil
				}
			}
			return false, nil
		}
		wait := c.SampleInterval
		if st.Extended && wait > time.Second {
			wait = time.Second
		}
		if left := st.SoakUntil.Sub(now); left > 0 && left < wait {
			wait = left
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-c.Clock.After(wait):
		case <-c.ctrlCh:
		}
	}
}

// sample evaluates the gate on the stage's devices once. With final set, a
// device that is not healthy by now fails.
func (c *Controller) sample(ctx context.Context, r *Rollout, final bool) error {
	var recs []*DeviceRecord
	for _, rec := range c.sortedDevices(r) {
		inStage := rec.Stage == r.Stage && (rec.State == DeviceVerifying || rec.State == DeviceHealthy)
		catchingUp := rec.CatchUp && rec.State == DeviceVerifying
		if inStage || catchingUp {
			recs = append(recs, rec)
		}
	}
	return c.sampleDevices(ctx, r, recs, final)
}

// sampleDevices evaluates the gate on devices once.
func (c *Controller) sampleDevices(ctx context.Context, r *Rollout, recs []*DeviceRecord, final bool) error {
	refs := make([]DeviceRef, 0, len(recs))
	for _, rec := range recs {
		refs = append(refs, rec.DeviceRef)
	}
	if len(refs) == 0 {
		return nil
	}
	health, err := c.Health.Health(ctx, r, refs)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Inconclusive: never a verdict from stale data.
		c.Logger.Named("controller").Warn("health is inconclusive; waiting", "rollout", r.App, "error", err)
		if final {
			return fmt.Errorf("evaluating the gate of %s: health is inconclusive: %w", r.App, err)
		}
		return nil
	}
	now := c.Clock.Now()
	canary := r.Stage < len(r.Stages) && r.Stages[r.Stage].Canary && r.Phase == PhaseCanary
	for _, rec := range recs {
		h := health[rec.ID]
		v := c.Gate.Evaluate(c.Policy, rec, h, now)
		if h.Metrics != nil {
			m := *h.Metrics
			rec.After = &m
			if canary && v.Status != VerdictFail {
				c.record(rec.ID, now, &m)
			}
		}
		changed := false
		switch v.Status {
		case VerdictFail:
			rec.State = DeviceFailed
			rec.Reason = v.Reason
			rec.Layer = v.Layer
			changed = true
			c.emitDevice(r, rec, "verify", "failed", fmt.Sprintf("L%d: %s", v.Layer, v.Reason))
		case VerdictPass:
			if rec.State == DeviceVerifying && rec.CatchUp {
				rec.State = DeviceCaughtUp
				rec.HealthyAt = now
				rec.Reason = ""
				changed = true
				c.emitDevice(r, rec, "catch-up", "caught-up", fmt.Sprintf("healthy %s after its switch", now.Sub(rec.SwitchedAt).Round(time.Millisecond)))
			} else if rec.State == DeviceVerifying {
				rec.State = DeviceHealthy
				rec.HealthyAt = now
				rec.Reason = ""
				changed = true
				c.emitDevice(r, rec, "verify", "healthy", fmt.Sprintf("healthy %s after its switch", now.Sub(rec.SwitchedAt).Round(time.Millisecond)))
			}
		case VerdictPending:
			if final && rec.CatchUp && rec.Stage != r.Stage && now.Before(rec.SwitchedAt.Add(c.HealthDeadline)) {
				// Caught up late in another stage's soak: keep verifying
				// it (the next soak, or confirm, decides).
				break
			}
			if final {
				if !h.Online {
					rec.State = DeviceSkippedOffline
					rec.Reason = "went offline while verifying; it will be verified (or rolled back) when it returns"
					c.emitDevice(r, rec, "verify", "skipped-offline", rec.Reason)
				} else {
					rec.State = DeviceFailed
					rec.Layer = v.Layer
					rec.Reason = "not healthy by the end of the soak: " + v.Reason
					c.emitDevice(r, rec, "verify", "failed", rec.Reason)
				}
				changed = true
			}
		}
		if changed {
			rec.UpdatedAt = now
			if err := c.saveDevice(ctx, r, rec); err != nil {
				return err
			}
		}
	}
	return nil
}

// gate evaluates the stage's thresholds and decides: pass, quarantine the
// few devices that failed, or roll back.
func (c *Controller) gate(ctx context.Context, r *Rollout) error {
	st := &r.Stages[r.Stage]
	// After the full soak a device that is not healthy fails; after a
	// fail-fast, devices still starting stay undecided (and are rolled
	// back with the others).
	soakEnded := !c.Clock.Now().Before(st.SoakUntil)
	if err := c.sample(ctx, r, soakEnded); err != nil {
		return err
	}
	recs := c.stageDevices(r, r.Stage)
	attempted, failed := stageCounts(recs)
	offline := 0
	for _, rec := range recs {
		if rec.State == DeviceSkippedOffline {
			offline++
		}
	}
	st.Attempted, st.Failed, st.Offline = attempted, failed, offline
	failPct := percent(failed, attempted)
	numbers := map[string]float64{
		"attempted": float64(attempted), "failed": float64(failed), "offline": float64(offline),
		"failure_percent": failPct, "max_failure_percent": c.Policy.Rollback.MaxFailurePercent,
	}
	if c.degraded != "" {
		st.Verdict = "failed"
		st.FinishedAt = c.Clock.Now()
		reason := fmt.Sprintf("%s failed its gate: %s", st.Name, c.degraded)
		c.degraded = ""
		c.decide(r, "rollback", reason, numbers)
		return c.beginRollback(ctx, r, c.Policy.Rollback.Scope, reason)
	}
	if attempted == 0 && st.Canary {
		st.Verdict = "inconclusive"
		return c.halt(ctx, r, fmt.Sprintf("no canary device could be reached (%d offline); bring devices back online, then `fleetplan resume %s`", offline, r.App))
	}
	if failPct > c.Policy.Rollback.MaxFailurePercent {
		st.Verdict = "failed"
		st.FinishedAt = c.Clock.Now()
		analysis := AnalyzeFailures(recs)
		reason := fmt.Sprintf("%s failed its gate: %d of %d devices failed (%.1f%% > max_failure_percent %g). %s",
			st.Name, failed, attempted, failPct, c.Policy.Rollback.MaxFailurePercent, analysis)
		c.decide(r, "rollback", reason, numbers)
		return c.beginRollback(ctx, r, c.Policy.Rollback.Scope, reason)
	}
	// Under the threshold: devices that failed alone are rolled back
	// individually and quarantined; the rollout goes on.
	for _, rec := range recs {
		if rec.State != DeviceFailed {
			continue
		}
		if err := c.quarantine(ctx, r, rec); err != nil {
			return err
		}
	}
	st.Verdict = "passed"
	st.FinishedAt = c.Clock.Now()
	c.decide(r, "gate-passed", fmt.Sprintf("%s passed its gate: %d of %d devices healthy, %d failed (%.1f%% <= %g), %d offline",
		st.Name, attempted-failed, attempted, failed, failPct, c.Policy.Rollback.MaxFailurePercent, offline), numbers)
	switch {
	case st.Canary:
		r.Phase = PhaseAwaitingApproval
		r.Step = ""
	case r.Stage+1 < len(r.Stages):
		r.Phase = PhaseWave
		r.Stage++
		r.Step = StepSwitching
	default:
		r.Phase = PhaseConfirm
		r.Step = ""
	}
	return c.save(ctx, r)
}

// awaitingVerdicts reports whether a device of the current stage has no
// verdict yet but is still within its health deadline: the gate waits for
// it rather than failing a device that just switched.
func (c *Controller) awaitingVerdicts(r *Rollout, now time.Time) bool {
	for _, rec := range c.stageDevices(r, r.Stage) {
		if rec.State == DeviceVerifying && now.Before(rec.SwitchedAt.Add(c.HealthDeadline)) {
			return true
		}
	}
	return false
}

// catchUpSwitch switches the devices that were offline when their stage ran
// and are back now; they are then verified through the same gate.
func (c *Controller) catchUpSwitch(ctx context.Context, r *Rollout) error {
	if !c.Policy.Offline.CatchUp || c.Health == nil {
		return nil
	}
	var cands []*DeviceRecord
	for _, rec := range c.sortedDevices(r) {
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
		if ctl := c.currentControls(); ctl.Pause != nil || ctl.Rollback != nil {
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
	for _, rec := range c.sortedDevices(r) {
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
	c.ctrlCh = make(chan struct{}, 1)
	for {
		var skipped []*DeviceRecord
		for _, rec := range c.sortedDevices(r) {
			if rec.State == DeviceSkippedOffline && rec.Stage >= 0 {
				skipped = append(skipped, rec)
			}
		}
		if len(skipped) == 0 {
			return r, nil
		}
		refs := make([]DeviceRef, len(skipped))
		for i, rec := range skipped {
			refs[i] = rec.DeviceRef
		}
		health, err := c.Health.Health(ctx, r, refs)
		if err != nil {
			return r, fmt.Errorf("reading the health of skipped devices: %w", err)
		}
		var switched []*DeviceRecord
		for _, rec := range skipped {
			if !health[rec.ID].Online {
				continue
			}
			if r.Outcome == OutcomeRolledBack {
				if rec.Attempted {
					if err := c.rollBackDevice(ctx, r, rec); err != nil {
						return r, err
					}
				} else {
					rec.State = DeviceRolledBack
					rec.Reason = "back online; it never left the old slot"
					if err := c.saveDevice(ctx, r, rec); err != nil {
						return r, err
					}
				}
				continue
			}
			rec.CatchUp = true
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
		if !wait {
			return r, nil
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

// record keeps a canary device's metric samples for trend detection.
func (c *Controller) record(id string, at time.Time, m *Metrics) {
	if c.series == nil {
		c.series = map[string]*metricSeries{}
	}
	s := c.series[id]
	if s == nil {
		s = &metricSeries{}
		c.series[id] = s
	}
	if m.MemoryMB > 0 {
		s.memory = append(s.memory, Sample{At: at, Value: m.MemoryMB})
	}
	if m.P95LatencyMS > 0 {
		s.latency = append(s.latency, Sample{At: at, Value: m.P95LatencyMS})
	}
	if finite(m.CPUPercent) && m.CPUPercent > 0 {
		s.cpu = append(s.cpu, Sample{At: at, Value: m.CPUPercent})
	}
	if m.TemperatureC > 0 {
		s.temp = append(s.temp, Sample{At: at, Value: m.TemperatureC})
	}
}

// quarantine rolls one failed device back and excludes it from later waves.
func (c *Controller) quarantine(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	reason := rec.Reason
	rec.State = DeviceRollingBack
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	c.emitDevice(r, rec, "quarantine", "intent", reason)
	if err := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active); err != nil {
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

// awaitApproval waits for an operator's approval of the canary (or records
// the automatic one).
func (c *Controller) awaitApproval(ctx context.Context, r *Rollout) error {
	auto := c.AutoApprove || c.Policy.Canary.Approval == ApprovalAuto
	for {
		ctl := c.currentControls()
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
			c.decide(r, "approved", fmt.Sprintf("canary approved by %s: %s", a.Actor, a.Saw), nil)
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
			c.emit(r, "", "await-approval", "waiting", fmt.Sprintf("canary passed; approve with `fleetplan approve %s`", r.App))
			if err := c.save(ctx, r); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctrlCh:
		}
	}
}

// confirm makes the candidate slot the active one.
func (c *Controller) confirm(ctx context.Context, r *Rollout) error {
	var late []*DeviceRecord
	for _, rec := range c.sortedDevices(r) {
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
	c.emit(r, "", "confirm", "intent", fmt.Sprintf("slot %s becomes the active slot with version %s", r.Candidate, r.Version))
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
	c.decide(r, "confirmed", fmt.Sprintf("%s %s is the active version (slot %s)", r.App, r.Version, r.Candidate), nil)
	r.Phase = PhaseDone
	r.Outcome = OutcomeSucceeded
	r.FinishedAt = now
	return c.save(ctx, r)
}

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
	for _, rec := range c.sortedDevices(r) {
		if rec.State == DeviceHealthy || rec.State == DeviceCaughtUp {
			todo = append(todo, rec)
		}
	}
	return c.parallel(todo, func(rec *DeviceRecord) error {
		c.emitDevice(r, rec, "release-standby", "intent", fmt.Sprintf("stopping the standby slot %s", r.Active))
		err := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Candidate)
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

// parallel runs f on each device, at most max_parallel at a time, and
// returns the first error once all have finished.
func (c *Controller) parallel(recs []*DeviceRecord, f func(*DeviceRecord) error) error {
	sem := make(chan struct{}, max(c.Policy.MaxParallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, rec := range recs {
		sem <- struct{}{}
		wg.Add(1)
		go func(rec *DeviceRecord) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(rec); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(rec)
	}
	wg.Wait()
	return firstErr
}

// manualRollback starts a rollback an operator asked for.
func (c *Controller) manualRollback(ctx context.Context, r *Rollout, req *Request) error {
	reason := fmt.Sprintf("manual rollback requested by %s", req.Actor)
	if req.Reason != "" {
		reason += ": " + req.Reason
	}
	c.decide(r, "rollback", reason, nil)
	return c.beginRollback(ctx, r, ScopeFleet, reason)
}

// beginRollback moves the rollout to ROLLING_BACK with a scope.
func (c *Controller) beginRollback(ctx context.Context, r *Rollout, scope RollbackScope, reason string) error {
	if scope == "" {
		scope = ScopeWave
	}
	// A failed canary is the only stage on the candidate: both scopes
	// mean the same. A wave with scope "wave" takes back that wave only
	// and halts for an operator.
	r.RollbackScope = scope
	r.RollbackStage = r.Stage
	r.RollbackReason = reason
	r.Phase = PhaseRollingBack
	r.Step = ""
	return c.save(ctx, r)
}

// rollBack puts every device of the rollback's scope back on the active
// slot. Nothing in it needs the candidate version to work.
func (c *Controller) rollBack(ctx context.Context, r *Rollout) error {
	var todo []*DeviceRecord
	for _, rec := range c.sortedDevices(r) {
		if rec.Stage < 0 {
			continue
		}
		if r.RollbackScope == ScopeWave && r.Stage > 0 && rec.Stage != r.RollbackStage {
			continue
		}
		if rec.State.OnCandidate() || (rec.State == DeviceSkippedOffline && rec.Attempted) {
			todo = append(todo, rec)
		}
	}
	if err := c.parallel(todo, func(rec *DeviceRecord) error { return c.rollBackDevice(ctx, r, rec) }); err != nil {
		return err
	}
	now := c.Clock.Now()
	if r.RollbackScope == ScopeWave && r.Stage > 0 {
		r.Halted = fmt.Sprintf("%s was rolled back (%s); earlier stages still run %s: `fleetplan resume %s` retries the wave, `fleetplan rollback %s` takes the whole fleet back",
			r.Stages[r.Stage].Name, r.RollbackReason, r.Version, r.App, r.App)
		r.Phase = PhaseWave
		r.Step = StepGate
		c.decide(r, "halted", r.Halted, nil)
		if err := c.save(ctx, r); err != nil {
			return err
		}
		return ErrHalted
	}
	r.Phase = PhasePrepare
	r.Step = ""
	r.Outcome = OutcomeRolledBack
	r.FinishedAt = now
	c.decide(r, "rolled-back", fmt.Sprintf("every device is back on %s (slot %s)", versionName(r.PreviousVersion), slotName(r.Active)), nil)
	return c.save(ctx, r)
}

func (c *Controller) rollBackDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.State = DeviceRollingBack
	if err := c.saveDevice(ctx, r, rec); err != nil {
		return err
	}
	c.emitDevice(r, rec, "rollback", "intent", fmt.Sprintf("slot %s -> %s", r.Candidate, slotName(r.Active)))
	start := c.Clock.Now()
	err := c.Cluster.SwitchDevice(ctx, rec.DeviceRef, candidateValue(r), r.Active)
	switch {
	case err == nil:
		rec.State = DeviceRolledBack
		rec.Attempted = false
		c.emitDevice(r, rec, "rollback", "ok", fmt.Sprintf("back on slot %s in %s", slotName(r.Active), c.Clock.Now().Sub(start).Round(time.Millisecond)))
	case errors.Is(err, ErrDeviceOffline):
		rec.State = DeviceSkippedOffline
		rec.Reason = "offline during the rollback; it will be rolled back when it returns"
		c.emitDevice(r, rec, "rollback", "skipped-offline", err.Error())
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		c.emitDevice(r, rec, "rollback", "error", err.Error())
		return fmt.Errorf("rolling back device %s: %w", rec.Name, err)
	}
	return c.saveDevice(ctx, r, rec)
}

// halt stops the rollout for an operator, with the reason.
func (c *Controller) halt(ctx context.Context, r *Rollout, reason string) error {
	r.Halted = reason
	c.decide(r, "halted", reason, nil)
	if err := c.save(ctx, r); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s", ErrHalted, reason)
}

// waitHalted waits until an operator resumes (clears the pause) or rolls
// back a halted rollout.
func (c *Controller) waitHalted(ctx context.Context, r *Rollout) error {
	return fmt.Errorf("%w: %s", ErrHalted, r.Halted)
}

// Resume clears a halt so that the next Run retries: devices of the halted
// stage that were rolled back become pending again.
func Resume(r *Rollout) {
	if r.Halted == "" {
		return
	}
	r.Halted = ""
	if r.Phase == PhaseWave && r.Step == StepGate && r.RollbackScope != "" {
		for _, rec := range r.Devices {
			if rec.Stage == r.Stage && rec.State == DeviceRolledBack {
				rec.State = DevicePending
				rec.Reason = ""
			}
		}
		st := &r.Stages[r.Stage]
		st.Verdict, st.StartedAt, st.SoakUntil, st.FinishedAt = "", time.Time{}, time.Time{}, time.Time{}
		r.Step = StepSwitching
		r.RollbackScope, r.RollbackReason = "", ""
	}
}

// waitUnpaused blocks while an operator's pause is in effect.
func (c *Controller) waitUnpaused(ctx context.Context, r *Rollout) error {
	announced := false
	for {
		ctl := c.currentControls()
		if ctl.Rollback != nil {
			return c.manualRollback(ctx, r, ctl.Rollback)
		}
		if ctl.Pause == nil {
			if r.Paused {
				r.Paused = false
				c.decide(r, "resumed", "the rollout was resumed", nil)
				return c.save(ctx, r)
			}
			return nil
		}
		if !announced {
			announced = true
			r.Paused = true
			c.decide(r, "paused", fmt.Sprintf("paused by %s; resume with `fleetplan resume %s`", ctl.Pause.Actor, r.App), nil)
			if err := c.save(ctx, r); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctrlCh:
		}
	}
}

// watchControls follows the operators' requests with a blocking query.
func (c *Controller) watchControls(ctx context.Context, log hclog.Logger, idx uint64) {
	failures := 0
	for ctx.Err() == nil {
		ctl, next, err := c.Store.Controls(ctx, c.Policy.Name, idx, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := time.Duration(failures) * time.Second
			if wait > 30*time.Second {
				wait = 30 * time.Second
			}
			log.Warn("reading operator requests failed; retrying", "error", err, "wait", wait)
			select {
			case <-ctx.Done():
				return
			case <-c.Clock.After(wait):
			}
			continue
		}
		failures = 0
		if next < idx {
			next = 0
		}
		changed := next != idx
		idx = next
		if changed {
			c.mu.Lock()
			c.controls = ctl
			c.mu.Unlock()
			select {
			case c.ctrlCh <- struct{}{}:
			default:
			}
		}
	}
}

func (c *Controller) currentControls() Controls {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.controls
}

// save persists the rollout, retrying transient failures for SaveRetry.
func (c *Controller) save(ctx context.Context, r *Rollout) error {
	r.UpdatedAt = c.Clock.Now()
	return c.retry(ctx, "saving the state of rollout "+r.App, func() error { return c.Store.SaveRollout(ctx, r) })
}

func (c *Controller) saveDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.UpdatedAt = c.Clock.Now()
	return c.retry(ctx, fmt.Sprintf("saving the state of device %s in rollout %s", rec.Name, r.App), func() error { return c.Store.SaveDevice(ctx, r.App, rec) })
}

func (c *Controller) retry(ctx context.Context, what string, f func() error) error {
	deadline := c.Clock.Now().Add(c.SaveRetry)
	wait := 250 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrConflict) || ctx.Err() != nil || c.Clock.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		c.Logger.Named("controller").Warn("write failed; retrying", "what", what, "error", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-c.Clock.After(wait):
		}
		if wait *= 2; wait > 5*time.Second {
			wait = 5 * time.Second
		}
	}
}

// decide records a decision and emits it.
func (c *Controller) decide(r *Rollout, kind, reason string, numbers map[string]float64) {
	d := Decision{Time: c.Clock.Now(), Phase: r.Phase, Kind: kind, Reason: reason, Numbers: numbers}
	if r.Phase == PhaseCanary || r.Phase == PhaseWave {
		if r.Stage < len(r.Stages) {
			d.Stage = r.Stages[r.Stage].Name
		}
	}
	r.Decisions = append(r.Decisions, d)
	r.LastAction = kind + ": " + reason
	c.Logger.Named("controller").Info("decision", "rollout", r.App, "kind", kind, "reason", reason)
	c.emit(r, "", "decision:"+kind, "ok", reason)
}

func (c *Controller) emit(r *Rollout, device, action, outcome, detail string) {
	if c.OnEvent == nil {
		return
	}
	e := Event{Time: c.Clock.Now(), Rollout: r.App, RunID: r.ID, Phase: r.Phase, Device: device, Actor: c.Actor, Action: action, Outcome: outcome, Detail: detail}
	if (r.Phase == PhaseCanary || r.Phase == PhaseWave || r.Phase == PhaseRollingBack) && r.Stage < len(r.Stages) {
		e.Stage = r.Stages[r.Stage].Name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.OnEvent(e)
}

func (c *Controller) emitDevice(r *Rollout, rec *DeviceRecord, action, outcome, detail string) {
	c.Logger.Named("controller").Debug("device", "rollout", r.App, "device", rec.Name, "action", action, "outcome", outcome, "detail", detail)
	c.emit(r, rec.Name, action, outcome, detail)
}

// stageDevices returns the stage's devices sorted by name.
func (c *Controller) stageDevices(r *Rollout, stage int) []*DeviceRecord {
	var out []*DeviceRecord
	for _, rec := range r.Devices {
		if rec.Stage == stage {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *Controller) sortedDevices(r *Rollout) []*DeviceRecord {
	out := make([]*DeviceRecord, 0, len(r.Devices))
	for _, rec := range r.Devices {
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// stageCounts returns how many devices a stage attempted (switched, so not
// counting offline or pending ones) and how many of those failed.
func stageCounts(recs []*DeviceRecord) (attempted, failed int) {
	for _, rec := range recs {
		switch rec.State {
		case DeviceVerifying, DeviceHealthy, DeviceCaughtUp:
			attempted++
		case DeviceFailed, DeviceQuarantined:
			attempted++
			failed++
		case DeviceRollingBack, DeviceRolledBack:
			if rec.Layer > 0 || strings.HasPrefix(rec.Reason, "switch failed") {
				attempted++
				failed++
			} else if rec.SwitchedAt != (time.Time{}) {
				attempted++
			}
		}
	}
	return attempted, failed
}

// CanarySummary describes the canary's health in one line (what an
// approver saw).
func CanarySummary(r *Rollout) string {
	counts := map[DeviceState]int{}
	total := 0
	for _, rec := range r.Devices {
		if rec.Stage == 0 {
			counts[rec.State]++
			total++
		}
	}
	parts := []string{fmt.Sprintf("%d/%d canary devices healthy", counts[DeviceHealthy], total)}
	for _, s := range []DeviceState{DeviceFailed, DeviceQuarantined, DeviceSkippedOffline} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

func describePosition(r *Rollout) string {
	switch r.Phase {
	case PhaseCanary, PhaseWave:
		if r.Stage < len(r.Stages) {
			return fmt.Sprintf("%s (%s, %s)", r.Phase, r.Stages[r.Stage].Name, r.Step)
		}
	}
	return string(r.Phase)
}

func percent(part, whole int) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) * 100 / float64(whole)
}

func slotName(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func versionName(v string) string {
	if v == "" {
		return "no version (first install removed)"
	}
	return v
}
