package scheduler

import (
	"context"
	"errors"
	"fmt"
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
	// ControlPlaneRetry bounds how long a cluster action or health read
	// failing for the control plane (ErrControlPlane) is retried before the
	// rollout pauses for an operator; default 2 minutes.
	ControlPlaneRetry time.Duration
	// Fence, when set, is asked before every cluster action and every
	// state write whether this controller still holds the rollout's lock;
	// an error stops the controller before it acts (ErrLockLost). The
	// caller also cancels Run's context when the lock is lost.
	Fence func() error
	// BeforeCandidate, when set, runs in PREPARE once the pre-flight
	// checklist passed and before the candidate slot job is registered
	// (the release's health configuration is published for the device
	// agents then, not before the run's checks passed).
	BeforeCandidate func(ctx context.Context, r *Rollout) error
	// JobspecErr is the error Nomad gave parsing the release's jobspec
	// (the pre-flight checklist stops on it); nil when it parsed.
	JobspecErr error
	// NewID names a new run; default: r<UTC timestamp>.
	NewID func(now time.Time) string
	// OnEvent receives every action and decision as it happens (the CLI's
	// live view and the audit trail). It is called synchronously.
	OnEvent func(Event)
	// Audit, when set, records every event in the audit trail. Intents are
	// recorded before their action and fail closed: an intent that cannot
	// be recorded is retried, then the rollout pauses; the action never
	// runs unrecorded (I9). Events given together are written together
	// (one Consul transaction where they fit).
	Audit func(ctx context.Context, es ...Event) error
	// Compare yields the measurements of an a-b comparison when the
	// health source does not implement ComparisonSource (ab.go).
	Compare ComparisonSource

	// controls are the operators' requests (pause, rollback, approval),
	// held as a value that one goroutine follows.
	controls controlState
	// events delivers OnEvent on its own lock, never the controller's.
	events eventSink
}

// The controller's concerns, one file each:
//
//	controller.go    the type, Run (the state machine loop) and start
//	prepare.go       PREPARE (plan, reconcile stale slots, checklist, register) and VALIDATE
//	checklist.go     the pre-flight checklist
//	switch.go        a stage's switching step and one device's switch
//	soak.go          soaking: health sampling and trend detection
//	gate.go          the stage gate: pass, quarantine the few, or roll back
//	verdict.go       one device's verdict from its health (DefaultGate)
//	analysis.go      the failure analysis of a failed stage
//	approval.go      the canary approval and CONFIRM
//	bluegreen.go     the hot standby of blue-green rollouts
//	ab.go            the a-b comparison of groups A and B, and its verdict
//	rollback.go      rolling back, verified, and restoring the active slot
//	halt.go          halting for an operator, and resuming
//	catchup.go       catching up returning devices, and quarantine
//	controls.go      the operators' requests (pause, rollback, approval)
//	controlplane.go  retrying control-plane errors, then pausing
//	pool.go          the one bounded worker pool for device actions
//	persist.go       writing state with retries; the lock fence
//	events.go        decisions, intents and events
//	decision.go      decision kinds, halts and remedies
//	tally.go         counting devices by state

// ErrHalted is returned by Run when the rollout stopped and needs an
// operator (for example a wave was rolled back with scope "wave").
var ErrHalted = errors.New("rollout halted")

// HaltError is returned by Run when the rollout halted; it wraps ErrHalted.
type HaltError struct{ Halt Halt }

func (e *HaltError) Error() string { return ErrHalted.Error() + ": " + e.Halt.Reason }
func (e *HaltError) Unwrap() error { return ErrHalted }

// InProgressError is returned by Run when another version's run is in
// progress: it must finish or be rolled back first.
type InProgressError struct {
	App, RunID, Version, Wanted string
}

func (e *InProgressError) Error() string {
	return fmt.Sprintf("rollout %q is in progress with version %s (run %s); finish it or roll it back before applying version %s",
		e.App, e.Version, e.RunID, e.Wanted)
}

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
	if c.ControlPlaneRetry <= 0 {
		c.ControlPlaneRetry = 2 * time.Minute
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
			return r, &InProgressError{App: r.App, RunID: r.ID, Version: r.Version, Wanted: c.Policy.Release.Version}
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
	stop, err := c.followControls(ctx, log)
	if err != nil {
		return r, err
	}
	defer stop()

	for !r.Finished() {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		if ctl := c.controls.current(); ctl.Rollback != nil && r.Phase != PhaseRollingBack {
			if err := c.manualRollback(ctx, r, ctl.Rollback); err != nil {
				return r, err
			}
			continue
		}
		if r.Halted() && r.Phase != PhaseRollingBack {
			// A halted rollout waits for an operator: resume retries,
			// rollback takes everything back.
			return r, &HaltError{Halt: *r.Halt}
		}
		var err error
		switch r.Phase {
		case PhasePrepare:
			err = c.prepare(ctx, r)
		case PhaseValidate:
			err = c.validate(ctx, r)
		case PhaseCanary, PhaseWave:
			if abDue(r) {
				err = c.enterCompare(ctx, r)
				break
			}
			err = c.runStage(ctx, r)
		case PhaseCompare:
			err = c.compareAB(ctx, r)
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
		var cpe *ControlPlaneError
		if errors.As(err, &cpe) && r.Phase != PhaseRollingBack && !r.Halted() {
			// I5: the control plane failed past its retry budget: pause
			// with the reason, never a verdict.
			return r, c.halt(ctx, r, Halt{
				Reason: cpe.Error(),
				Fix:    "check the Nomad and Consul servers (leader, reachability)",
				Remedy: RemedyResume,
			})
		}
		if err != nil {
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
		prev := *active
		r.PreviousActive = &prev
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
	c.decide(r, DecisionStart, fmt.Sprintf("rollout of %s %s started by %s (candidate slot %s, active slot %s)", r.App, r.Version, c.Actor, r.Candidate, slotName(r.Active)), nil)
	if err := c.save(ctx, r); err != nil {
		return nil, err
	}
	return r, nil
}
