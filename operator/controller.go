package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Run describes the controller of one rollout.
type Run struct {
	Policy *scheduler.Policy
	// Base is the release's parsed jobspec; nil when the slot jobs exist
	// already (catch-up, a rollback without the policy file).
	Base *nomadapi.Job
	// WatchHealth follows the devices' health (Nomad allocations and Consul
	// checks); a rollback needs none.
	WatchHealth    bool
	Actor          string
	AutoApprove    bool
	SampleInterval time.Duration
	// OnEvent shows events (terminal, notifiers); Audit records them in
	// the audit trail, intents before their action (fail-closed).
	OnEvent func(scheduler.Event)
	Audit   *AuditSink
	// Lost is the lock's lost channel: once it is closed the controller
	// acts no more (its fence fails before every action and write).
	Lost <-chan struct{}
	// Fence, when set, is the synchronous check that the locks are still
	// held (store.Consul.Fence: the local lease, then a consistent read);
	// it runs before every Nomad write, every state write and every audit
	// record, after the Lost check.
	Fence func() error
	// PublishHealthConfig writes the release's health configuration for
	// the device agents; the controller calls it once the pre-flight
	// checklist passed, before the candidate is registered.
	PublishHealthConfig func(ctx context.Context) error
}

// Controller assembles the rollout controller of run: the one place a
// scheduler.Controller is built. stop releases what it started (the health
// watcher) once the controller is done.
func (o *Operator) Controller(run Run) (ctl *scheduler.Controller, stop func()) {
	cluster := jobs.NewNomad(o.Nomad, run.Policy, run.Base, o.Log)
	ctl = &scheduler.Controller{
		Policy:         run.Policy,
		Cluster:        jobs.WithTraffic(cluster, o.Consul),
		Gate:           scheduler.DefaultGate{},
		Store:          o.Store,
		Registry:       o.Registry(),
		Logger:         o.Log,
		Actor:          run.Actor,
		AutoApprove:    run.AutoApprove,
		SampleInterval: run.SampleInterval,
		OnEvent:        run.OnEvent,
		BeforeCandidate: func(ctx context.Context, _ *scheduler.Rollout) error {
			if run.PublishHealthConfig == nil {
				return nil
			}
			return run.PublishHealthConfig(ctx)
		},
	}
	fence := run.fence()
	if run.Audit != nil {
		ctl.Audit = run.Audit.Append
		if fence != nil {
			// A controller that lost its lock records nothing either.
			ctl.Audit = func(ctx context.Context, es ...scheduler.Event) error {
				if err := fence(); err != nil {
					return err
				}
				return run.Audit.Append(ctx, es...)
			}
		}
	}
	if fence != nil {
		ctl.Fence = fence
		cluster.Fence = fence
	}
	stop = func() {}
	if run.WatchHealth {
		watcher := checks.NewWatcher(o.Nomad, o.Consul, o.Log)
		ctl.Health, stop = watcher, watcher.Stop
	}
	return ctl, stop
}

// fence combines the lost channel and the synchronous Fence; nil when the
// run has neither.
func (run Run) fence() func() error {
	lost, check := run.Lost, run.Fence
	if lost == nil && check == nil {
		return nil
	}
	return func() error {
		if lost != nil {
			select {
			case <-lost:
				return errors.New("the Consul session holding the rollout's lock is gone")
			default:
			}
		}
		if check != nil {
			return check()
		}
		return nil
	}
}

// PrepareRelease parses the release's jobspec on the Nomad server.
func (o *Operator) PrepareRelease(ctx context.Context, p *scheduler.Policy) (*nomadapi.Job, error) {
	return jobs.ParseJobspec(ctx, o.Nomad, p.Release.Jobspec)
}

// PublishHealthConfig writes the release's health configuration
// (thresholds, functional probe) for the device agents, which read it from
// Consul KV. It runs only once every pre-flight check passed (I10: bad
// input changes nothing).
func (o *Operator) PublishHealthConfig(ctx context.Context, p *scheduler.Policy) error {
	cfg, err := agent.NewAppConfig(p)
	if err != nil {
		return fmt.Errorf("writing the health configuration of %s for the device agents: %w", p.Name, err)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("writing the health configuration of %s for the device agents: encoding it: %w", p.Name, err)
	}
	if err := o.Store.PutAgentConfig(ctx, "", p.Name, b); err != nil {
		return fmt.Errorf("writing the health configuration of %s for the device agents: %w", p.Name, err)
	}
	return nil
}

// RecoveryPolicy is the policy a controller runs a rollout with when its
// policy file is not at hand: enough to carry out a rollback, which needs
// nothing but the slots.
func RecoveryPolicy(r *scheduler.Rollout) *scheduler.Policy {
	return &scheduler.Policy{Name: r.App, MaxParallel: scheduler.DefaultMaxParallel, Release: scheduler.Release{Version: r.Version}, Strategy: r.Strategy}
}
