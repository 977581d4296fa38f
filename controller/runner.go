package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/notify"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// action is what the leader does next with a rollout's request.
type action int

const (
	// actWait: nothing to do until the request or the state changes (a
	// halt waiting for an operator, a request that failed, a run that
	// another controller runs).
	actWait action = iota
	// actRun: run (start or resume) the rollout.
	actRun
	// actCatchUp: the request's run finished; catch returning devices up
	// from time to time.
	actCatchUp
)

func (a action) String() string {
	return [...]string{"wait", "run", "catch-up"}[a]
}

// decide says what the leader does with a request given the rollout's
// current run (nil: none), and the request's new status to record first
// (nil: unchanged). It is pure.
func decide(req *store.RolloutRequest, state *scheduler.Rollout) (action, *store.RequestStatus) {
	st := req.Status
	if st.Terminal() {
		if st.State == store.RequestFinished && state != nil && state.Finished() && state.ID == st.RunID {
			return actCatchUp, nil
		}
		return actWait, nil
	}
	if state != nil && !state.Finished() {
		switch {
		case state.Version != req.Version:
			return actWait, &store.RequestStatus{State: store.RequestFailed, Reason: fmt.Sprintf(
				"rollout %s is in progress with version %s (run %s); finish it or roll it back (`fleetplan rollback %s`), then apply %s again",
				req.App, state.Version, state.ID, req.App, req.Version)}
		case state.Halted() && state.Phase != scheduler.PhaseRollingBack:
			reason := report.HaltText(state.App, state.Halt)
			if st != nil && st.State == store.RequestHalted && st.RunID == state.ID && st.Reason == reason {
				return actWait, nil
			}
			return actWait, &store.RequestStatus{State: store.RequestHalted, RunID: state.ID, Reason: reason}
		}
		return actRun, nil
	}
	// No run in progress.
	switch {
	case state != nil && st != nil && st.RunID != "" && state.ID == st.RunID:
		// The request's run finished (the status was not recorded yet).
		return actCatchUp, &store.RequestStatus{State: store.RequestFinished, RunID: state.ID, Outcome: string(state.Outcome), Reason: finishedReason(state)}
	case state != nil && state.Version == req.Version && state.StartedAt.After(req.SubmittedAt):
		// Another controller (an apply run in-process) ran this version
		// since the request was submitted.
		return actWait, &store.RequestStatus{State: store.RequestFinished, RunID: state.ID, Outcome: string(state.Outcome),
			Reason: "run " + state.ID + " of this version was run by another controller: " + finishedReason(state)}
	}
	return actRun, nil
}

func finishedReason(r *scheduler.Rollout) string {
	switch r.Outcome {
	case scheduler.OutcomeSucceeded:
		return fmt.Sprintf("done: %s %s runs in slot %s", r.App, r.Version, r.Candidate)
	case scheduler.OutcomeRolledBack, scheduler.OutcomeRollbackIncomplete:
		return fmt.Sprintf("%s: %s", r.Outcome, r.RollbackReason)
	}
	return string(r.Outcome)
}

// runRollout follows one rollout's request while this instance leads.
func (s *Service) runRollout(ctx context.Context, leader *store.Lease, app string) {
	log := s.log.With("rollout", app)
	defer s.m.Forget(app)
	var index uint64
	failures := 0
	var lastCatchUp time.Time
	leaderFence := s.fence(leader)
	for ctx.Err() == nil {
		req, err := s.st.LoadRequest(ctx, app)
		var state *scheduler.Rollout
		if err == nil {
			state, err = s.st.LoadState(ctx, app)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			s.m.APIError("consul")
			wait := blocking.Backoff(failures, time.Second, 30*time.Second)
			log.Warn("reading the rollout request and state", "error", err, "wait", wait)
			if blocking.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		if req == nil {
			log.Info("the rollout request is gone; no longer following it")
			s.mu.Lock()
			delete(s.rollouts, app)
			s.mu.Unlock()
			return
		}
		act, status := decide(req, state)
		s.info(app, func(i *RolloutInfo) {
			i.Version, i.Request = req.Version, req.ID
			if state != nil {
				i.Phase, i.RunID, i.Outcome = string(state.Phase), state.ID, string(state.Outcome)
			}
		})
		if state != nil {
			s.m.Phase(app, state.Phase)
		}
		if status != nil {
			s.saveStatus(ctx, leaderFence, req, *status, log)
		}
		s.info(app, func(i *RolloutInfo) {
			if req.Status != nil {
				i.State, i.Reason = req.Status.State, req.Status.Reason
			}
		})
		switch act {
		case actRun:
			if err := s.run(ctx, leader, app, log); err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				wait := blocking.Backoff(failures, 2*time.Second, time.Minute)
				log.Warn("running the rollout failed; trying again", "error", err, "wait", wait)
				s.info(app, func(i *RolloutInfo) { i.Reason = err.Error() })
				if blocking.Sleep(ctx, wait) != nil {
					return
				}
			} else {
				failures = 0
			}
			continue
		case actCatchUp:
			if time.Since(lastCatchUp) >= s.cfg.CatchUpInterval {
				lastCatchUp = time.Now()
				if err := s.catchUp(ctx, leader, req, log); err != nil && ctx.Err() == nil {
					log.Warn("catching devices up", "error", err)
				}
			}
		}
		wait := 5 * time.Minute
		if act == actCatchUp {
			wait = s.cfg.CatchUpInterval
		}
		next, err := s.st.WaitChange(ctx, app, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.m.APIError("consul")
			if blocking.Sleep(ctx, 2*time.Second) != nil {
				return
			}
			continue
		}
		index = next
	}
}

// fence is the store's fence on the leases, measured.
func (s *Service) fence(leases ...*store.Lease) func() error {
	f := s.st.Fence(leases...)
	return func() error {
		start := time.Now()
		err := f()
		s.m.Fence(time.Since(start), err)
		return err
	}
}

// saveStatus records the request's status, fenced: a leader that lost its
// lock writes nothing. A request replaced meanwhile is left alone.
func (s *Service) saveStatus(ctx context.Context, fence func() error, req *store.RolloutRequest, st store.RequestStatus, log hclog.Logger) {
	st.Controller, st.UpdatedAt = s.cfg.Name, time.Now().UTC()
	for try := 0; try < 3; try++ {
		if err := fence(); err != nil {
			log.Warn("not recording the request's status: this instance may no longer act", "error", err)
			return
		}
		req.Status = &st
		err := s.st.SaveRequestStatus(ctx, req)
		if err == nil {
			log.Info("request status", "request", req.ID, "state", st.State, "run", st.RunID, "reason", st.Reason)
			return
		}
		if !errors.Is(err, scheduler.ErrConflict) {
			log.Warn("recording the request's status", "error", err)
			return
		}
		cur, lerr := s.st.LoadRequest(ctx, req.App)
		if lerr != nil || cur == nil || cur.ID != req.ID {
			return // replaced or deleted: the new request is handled next
		}
		req.Index = cur.Index
	}
}

// run takes the rollout's lock (waiting for it while another controller
// runs the rollout) and runs the rollout until it is done, rolled back or
// halted, or this instance loses a lock.
func (s *Service) run(ctx context.Context, leader *store.Lease, app string, log hclog.Logger) error {
	lease, err := s.st.AcquireRollout(ctx, leader.Session(), app, s.cfg.Name, true)
	if err != nil {
		return err
	}
	s.m.LockHeld(app, true)
	s.info(app, func(i *RolloutInfo) { i.Running = true })
	defer func() {
		lease.Release()
		s.m.LockHeld(app, false)
		s.info(app, func(i *RolloutInfo) { i.Running = false })
	}()
	rctx, cancel := operator.WhileHeld(ctx, lease.Lost())
	defer cancel()
	fence := s.fence(leader, lease)

	// Read both again under the lock: they may have changed meanwhile.
	req, err := s.st.LoadRequest(rctx, app)
	if err != nil || req == nil {
		return err
	}
	state, err := s.st.LoadState(rctx, app)
	if err != nil {
		return err
	}
	if act, status := decide(req, state); act != actRun {
		if status != nil {
			s.saveStatus(rctx, fence, req, *status, log)
		}
		return nil
	}
	if namespaceName(req.Namespace) != namespaceName(s.cfg.Namespace) {
		reason := fmt.Sprintf("the request is for Nomad namespace %q and this controller service runs in %q: run a controller service per namespace (fleetplan controller install -namespace %s), or apply with -local", namespaceName(req.Namespace), namespaceName(s.cfg.Namespace), namespaceName(req.Namespace))
		log.Error("the rollout request is for another namespace", "request", req.ID, "namespace", namespaceName(req.Namespace))
		s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestFailed, Reason: reason}, log)
		return nil
	}
	p, cleanup, perr := ParseRequest(req)
	defer cleanup()
	if perr != nil {
		log.Error("the rollout request is not valid", "request", req.ID, "error", perr)
		s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestFailed, Reason: perr.Error()}, log)
		return nil
	}
	base, jerr := s.op.PrepareRelease(rctx, p)
	if jerr != nil && errors.Unwrap(jerr) != nil {
		// Nomad did not answer: try again later.
		s.m.APIError("nomad")
		return fmt.Errorf("parsing the jobspec of %s with Nomad: %w", app, jerr)
	}
	actor := req.Actor
	if actor == "" {
		actor = "unknown"
	}
	actor += " (via " + s.cfg.Name + ")"
	sink, err := s.op.AuditSink("", actor)
	if err != nil {
		return err
	}
	defer sink.Close()
	var mu sync.Mutex
	runID := ""
	if req.Status != nil {
		runID = req.Status.RunID
	}
	notifyEvent, closeNotify := s.notifiers(rctx, p, log)
	defer closeNotify()
	ctl, stop := s.op.Controller(operator.Run{
		Policy:         p,
		Base:           base,
		WatchHealth:    true,
		Actor:          actor,
		AutoApprove:    req.AutoApprove,
		SampleInterval: time.Duration(req.SampleInterval),
		Audit:          sink,
		Lost:           lease.Lost(),
		Fence:          fence,
		PublishHealthConfig: func(ctx context.Context) error {
			return s.op.PublishHealthConfig(ctx, p)
		},
		OnEvent: func(e scheduler.Event) {
			s.m.Event(e)
			notifyEvent(e)
			mu.Lock()
			defer mu.Unlock()
			if e.RunID != "" && e.RunID != runID {
				runID = e.RunID
				s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestAccepted, RunID: runID}, log)
				s.info(app, func(i *RolloutInfo) { i.RunID, i.State = runID, store.RequestAccepted })
			}
			s.info(app, func(i *RolloutInfo) { i.Phase = string(e.Phase) })
		},
	})
	defer stop()
	if jerr != nil {
		// The jobspec does not parse: the pre-flight checklist halts the
		// run with Nomad's message.
		ctl.JobspecErr = jerr
	}
	log.Info("running the rollout", "request", req.ID, "version", req.Version, "actor", req.Actor)
	r, err := ctl.Run(rctx)
	mu.Lock()
	defer mu.Unlock()
	var inProgress *scheduler.InProgressError
	var halted *scheduler.HaltError
	switch {
	case errors.Is(err, scheduler.ErrNothingToDo):
		s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestFinished, Reason: "nothing to do: " + err.Error()}, log)
		return nil
	case errors.As(err, &inProgress):
		s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestFailed, Reason: err.Error()}, log)
		return nil
	case errors.As(err, &halted):
		id := runID
		if r != nil {
			id = r.ID
		}
		s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestHalted, RunID: id, Reason: report.HaltText(app, &halted.Halt)}, log)
		return nil
	case err != nil:
		return err
	}
	s.saveStatus(rctx, fence, req, store.RequestStatus{State: store.RequestFinished, RunID: r.ID, Outcome: string(r.Outcome), Reason: finishedReason(r)}, log)
	s.info(app, func(i *RolloutInfo) { i.Outcome = string(r.Outcome) })
	log.Info("rollout finished", "run", r.ID, "outcome", r.Outcome)
	return nil
}

// catchUp catches up the devices a finished run skipped, if any, under the
// rollout's lock (skipped when another controller holds it).
func (s *Service) catchUp(ctx context.Context, leader *store.Lease, req *store.RolloutRequest, log hclog.Logger) error {
	r, err := s.st.Load(ctx, req.App)
	if err != nil || r == nil || !r.Finished() {
		return err
	}
	need := r.Outcome == scheduler.OutcomeRollbackIncomplete
	for _, d := range r.Devices {
		if d.State == scheduler.DeviceSkippedOffline {
			need = true
		}
	}
	if !need {
		return nil
	}
	lease, err := s.st.AcquireRollout(ctx, leader.Session(), req.App, s.cfg.Name, false)
	if _, held := store.IsLockHeld(err); held {
		return nil
	} else if err != nil {
		return err
	}
	defer lease.Release()
	rctx, cancel := operator.WhileHeld(ctx, lease.Lost())
	defer cancel()
	p, cleanup, err := ParseRequest(req)
	defer cleanup()
	if err != nil {
		return err
	}
	actor := req.Actor + " (catch-up via " + s.cfg.Name + ")"
	sink, err := s.op.AuditSink("", actor)
	if err != nil {
		return err
	}
	defer sink.Close()
	notifyEvent, closeNotify := s.notifiers(rctx, p, log)
	defer closeNotify()
	ctl, stop := s.op.Controller(operator.Run{Policy: p, WatchHealth: true, Actor: actor, Audit: sink, Lost: lease.Lost(), Fence: s.fence(leader, lease),
		OnEvent: func(e scheduler.Event) {
			s.m.Event(e)
			notifyEvent(e)
		}})
	defer stop()
	log.Info("catching up devices of the finished run", "run", r.ID)
	_, err = ctl.CatchUp(rctx, false)
	return err
}

// notifiers builds the notifiers of the policy's notify blocks for one run
// by this instance: their secret references are resolved here, from this
// service's environment and the Nomad Variables its token reads (the
// request holds only the references). A notifier that cannot be built is
// logged and the run goes on without it: notifications never gate a
// rollout. The returned func never blocks.
func (s *Service) notifiers(ctx context.Context, p *scheduler.Policy, log hclog.Logger) (event func(scheduler.Event), closeFn func()) {
	if s.cfg.Notify != nil {
		return func(e scheduler.Event) { s.cfg.Notify(ctx, e, p.Release.Version) }, func() {}
	}
	if len(p.Notify) == 0 {
		return func(scheduler.Event) {}, func() {}
	}
	opts := notify.Options{Logger: s.log}
	if s.op.Nomad != nil {
		opts.Variables = s.op.Nomad.Variables()
	}
	set, err := notify.New(ctx, p.Notify, opts)
	if err != nil {
		log.Error("building the policy's notifiers; the rollout goes on without them", "error", err)
		return func(scheduler.Event) {}, func() {}
	}
	return func(e scheduler.Event) { set.Event(ctx, e, p.Release.Version) }, set.Close
}

// namespaceName names a namespace ("" is the default one).
func namespaceName(ns string) string {
	if ns == "" {
		return jobs.DefaultNamespace
	}
	return ns
}
