package operator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// Refused is the error of a request that does not apply to the rollout as
// it is: there is no such rollout, it is finished, or it is not waiting for
// what the request gives. Its message says why and what to do instead.
type Refused struct{ Reason string }

func (e *Refused) Error() string { return e.Reason }

func refused(format string, args ...any) error {
	return &Refused{Reason: fmt.Sprintf(format, args...)}
}

// IsRefused reports whether err is (or wraps) a Refused.
func IsRefused(err error) bool {
	var r *Refused
	return errors.As(err, &r)
}

// request is one kind of operator request.
type request struct {
	action   string // the audit record's action
	doing    string // what a failed store write was doing, "pausing"
	finished string // why a finished rollout refuses it
}

var (
	approveRequest  = request{action: "approve", doing: "recording the approval of", finished: "there is nothing to approve"}
	pauseRequest    = request{action: "pause", doing: "pausing", finished: "there is nothing to pause"}
	resumeRequest   = request{action: "resume", doing: "resuming", finished: "there is nothing to resume"}
	rollbackRequest = request{action: "rollback-request", doing: "requesting the rollback of", finished: "to go back to an earlier version, apply that version's policy"}
)

// do carries out a request on the current run of app: it refuses a
// finished run, writes the request (write returns the audit detail) and
// records it in the audit trail as the actor (Actor: with ACLs, the token;
// actor, then, is a comment).
func (o *Operator) do(ctx context.Context, app, actor string, req request, write func(r *scheduler.Rollout, actor string, now time.Time) (string, error)) (*scheduler.Rollout, error) {
	actor, err := o.Actor(ctx, actor)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", req.doing, app, err)
	}
	r, err := o.LoadRun(ctx, app)
	if err != nil {
		return nil, err
	}
	if r.Finished() {
		return nil, refused("rollout %q is finished (%s); %s", app, r.Outcome, req.finished)
	}
	now := time.Now()
	detail, err := write(r, actor, now)
	if err != nil {
		if IsRefused(err) {
			return nil, err
		}
		return nil, fmt.Errorf("%s %q: %w", req.doing, app, err)
	}
	sink, err := o.AuditSink("", actor)
	if err != nil {
		return nil, err
	}
	sink.Record(ctx, scheduler.Event{Time: now, Rollout: app, RunID: r.ID, Phase: r.Phase, Actor: actor, Action: req.action, Outcome: "ok", Detail: detail})
	return r, nil
}

// Approve approves a canary that passed its gate and records what it looked
// like.
func (o *Operator) Approve(ctx context.Context, app, actor, message string) (*scheduler.ApprovalRecord, error) {
	var rec *scheduler.ApprovalRecord
	_, err := o.do(ctx, app, actor, approveRequest, func(r *scheduler.Rollout, actor string, now time.Time) (string, error) {
		if r.Phase != scheduler.PhaseAwaitingApproval {
			return "", refused("rollout %q is in %s, not waiting for approval; an approval is only taken once the canary passed its gate (see `fleetplan status %s`)", app, Describe(r), app)
		}
		rec = &scheduler.ApprovalRecord{Actor: actor, Time: now, Message: message, Saw: scheduler.CanarySummary(r)}
		return rec.Saw + " " + rec.Message, o.Store.Approve(ctx, app, rec)
	})
	return rec, err
}

// Pause asks the controller to switch no more devices and start no stage.
func (o *Operator) Pause(ctx context.Context, app, actor, reason string) error {
	_, err := o.do(ctx, app, actor, pauseRequest, func(_ *scheduler.Rollout, actor string, now time.Time) (string, error) {
		return reason, o.Store.RequestPause(ctx, app, &scheduler.Request{Actor: actor, Time: now, Reason: reason})
	})
	return err
}

// Lease is a held rollout lock: Lost is closed when it is lost, Release
// gives it up.
type Lease struct {
	Lost    <-chan struct{}
	Release func()
}

// Rollback asks for the rollback of a rollout. When no controller runs it,
// Rollback holds its lock on return and lease is not nil: the caller runs
// the rollback (Recover) and then releases the lock.
func (o *Operator) Rollback(ctx context.Context, app, actor, reason string) (r *scheduler.Rollout, lease *Lease, err error) {
	r, err = o.do(ctx, app, actor, rollbackRequest, func(_ *scheduler.Rollout, actor string, now time.Time) (string, error) {
		return reason, o.Store.RequestRollback(ctx, app, &scheduler.Request{Actor: actor, Time: now, Reason: reason})
	})
	if err != nil {
		return nil, nil, err
	}
	if lost, release, lerr := o.Lock(ctx, app, false); lerr == nil {
		return r, &Lease{Lost: lost, Release: release}, nil
	}
	return r, nil, nil
}

// WhileHeld returns a context that ends when the lease is lost (I8: a
// controller that lost its lock stops acting, on every path).
func WhileHeld(ctx context.Context, lost <-chan struct{}) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-lost:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Recover runs a controller on a rollout without its policy file, as actor:
// enough to carry out a rollback. The caller holds the lock.
func (o *Operator) Recover(ctx context.Context, r *scheduler.Rollout, lease *Lease, actor string, onEvent func(scheduler.Event)) (*scheduler.Rollout, error) {
	lost := lease.Lost
	ctx, cancel := WhileHeld(ctx, lost)
	defer cancel()
	actor, err := o.Actor(ctx, actor)
	if err != nil {
		return nil, fmt.Errorf("rolling back %s: %w", r.App, err)
	}
	sink, err := o.AuditSink("", actor)
	if err != nil {
		return nil, err
	}
	ctl, stop := o.Controller(Run{Policy: RecoveryPolicy(r), Actor: actor, Audit: sink, Lost: lost, OnEvent: onEvent})
	defer stop()
	res, err := ctl.Run(ctx)
	if err != nil && !errors.Is(err, scheduler.ErrHalted) {
		return res, fmt.Errorf("rolling back %s: %w", r.App, err)
	}
	return res, nil
}

// Resume withdraws a pause. A halted rollout has no controller: Resume then
// clears the halt under the lock and returns cleared; the next apply goes
// on from where it halted.
func (o *Operator) Resume(ctx context.Context, app, actor string) (r *scheduler.Rollout, cleared bool, err error) {
	r, err = o.do(ctx, app, actor, resumeRequest, func(r *scheduler.Rollout, _ string, _ time.Time) (string, error) {
		err := o.Store.RequestResume(ctx, app)
		if r.Halted() && errors.Is(err, store.ErrNotPaused) {
			// A halted rollout need not be paused too: the halt is what
			// resume clears (defect 8: it used to stop at "not paused").
			return "clearing the halt: " + r.Halt.Reason, nil
		}
		return "", err
	})
	if err != nil || !r.Halted() {
		return r, false, err
	}
	_, release, err := o.Lock(ctx, app, false)
	if err != nil {
		return nil, false, err
	}
	defer release()
	if r, err = o.LoadRun(ctx, app); err != nil {
		return nil, false, err
	}
	scheduler.Resume(r)
	for _, d := range r.Devices {
		if err := o.Store.SaveDevice(ctx, app, d); err != nil {
			return nil, false, fmt.Errorf("saving device %s: %w", d.Name, err)
		}
	}
	if err := o.Store.SaveRollout(ctx, r); err != nil {
		return nil, false, fmt.Errorf("saving rollout %s: %w", app, err)
	}
	return r, true, nil
}

// Describe names where a rollout is: its phase and step.
func Describe(r *scheduler.Rollout) string {
	if r.Step != "" {
		return fmt.Sprintf("%s/%s", r.Phase, r.Step)
	}
	return string(r.Phase)
}
