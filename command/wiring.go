package command

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/audit"
	"github.com/fleetplan/fleetplan/registry"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
)

// wiring holds the clients and stores a command works with.
type wiring struct {
	nomad  *nomadapi.Client
	consul *consulapi.Client
	store  *store.Consul
	log    hclog.Logger
}

// connect builds the Nomad and Consul clients from the standard environment
// (NOMAD_ADDR, NOMAD_TOKEN, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, TLS
// variables) and checks that both answer.
func connect(log hclog.Logger) (*wiring, error) {
	nc, err := nomadClient()
	if err != nil {
		return nil, err
	}
	cc, err := consulClient()
	if err != nil {
		return nil, err
	}
	w := &wiring{nomad: nc, consul: cc, log: log}
	w.store = store.New(cc, store.Options{Logger: log})
	return w, nil
}

// lock takes the rollout's controller lock, or explains who holds it.
func (w *wiring) lock(ctx context.Context, app string, wait bool) (<-chan struct{}, func(), error) {
	holder := store.DefaultHolder()
	if wait {
		return w.store.LockWait(ctx, app, holder)
	}
	lost, release, err := w.store.Lock(ctx, app, holder)
	if held, ok := store.IsLockHeld(err); ok {
		return nil, nil, fmt.Errorf("rollout %q is being run by another controller (%s, since %s); follow it with `fleetplan status -watch %s`, or rerun with -wait",
			app, held.Holder, held.Since.Format(time.RFC3339), app)
	}
	return lost, release, err
}

func (w *wiring) registry() *registry.Registry {
	return registry.New(w.nomad, w.consul, registry.Options{Logger: w.log})
}

func (w *wiring) gate() scheduler.Gate {
	return scheduler.DefaultGate{}
}

// auditSink records controller events in the audit trail. A record that
// cannot be written is logged, and the error is kept for the summary: the
// rollout's own state (written with check-and-set before each action) stays
// the source of truth.
type auditSink struct {
	trail *audit.Trail
	log   hclog.Logger
	actor string
}

func (w *wiring) auditTrail(file, actor string) (*auditSink, error) {
	t := audit.New(w.consul, "")
	if file != "" {
		if err := t.MirrorTo(file); err != nil {
			return nil, err
		}
	}
	return &auditSink{trail: t, log: w.log.Named("audit"), actor: actor}, nil
}

func (a *auditSink) Record(ctx context.Context, e scheduler.Event) {
	rec := audit.Record{
		Time: e.Time, Rollout: e.Rollout, Run: e.RunID, Phase: string(e.Phase), Wave: e.Stage,
		Device: e.Device, Actor: e.Actor, Action: e.Action, Outcome: e.Outcome, Detail: e.Detail,
	}
	if rec.Actor == "" {
		rec.Actor = a.actor
	}
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	// The record must outlive an interrupted context: write it with a
	// short deadline of its own.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.trail.Append(wctx, rec); err != nil {
		a.log.Error("could not write an audit record", "action", rec.Action, "device", rec.Device, "error", err)
	}
}

func (a *auditSink) Close() error { return a.trail.Close() }

func auditRecord(rollout, device, action, outcome, detail, actor string) scheduler.Event {
	return scheduler.Event{Time: time.Now(), Rollout: rollout, Device: device, Action: action, Outcome: outcome, Detail: detail, Actor: actor}
}
