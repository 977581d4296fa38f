package operator

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/audit"
	"github.com/fleetplan/fleetplan/scheduler"
)

// AuditSink records controller events and operator requests in the audit
// trail. A record that cannot be written is logged: the rollout's own state
// (written with check-and-set before each action) stays the source of
// truth.
type AuditSink struct {
	trail *audit.Trail
	log   hclog.Logger
	actor string
}

// AuditSink returns a sink whose records name actor unless an event names
// its own; with file, every record is also appended to that JSON-lines file.
func (o *Operator) AuditSink(file, actor string) (*AuditSink, error) {
	t := o.auditTrail()
	if file != "" {
		if err := t.MirrorTo(file); err != nil {
			return nil, err
		}
	}
	return &AuditSink{trail: t, log: o.Log.Named("audit"), actor: actor}, nil
}

// Record writes one event.
func (a *AuditSink) Record(ctx context.Context, e scheduler.Event) {
	if err := a.Append(ctx, e); err != nil {
		a.log.Error("could not write an audit record", "action", e.Action, "device", e.Device, "error", err)
	}
}

// Append writes events and says whether they were written (the controller
// does not act on an intent that was not). Events written together share
// Consul transactions.
func (a *AuditSink) Append(ctx context.Context, es ...scheduler.Event) error {
	recs := make([]audit.Record, 0, len(es))
	for _, e := range es {
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
		recs = append(recs, rec)
	}
	// The records must outlive an interrupted context: write them with a
	// short deadline of their own.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return a.trail.Append(wctx, recs...)
}

// Close closes the mirror file.
func (a *AuditSink) Close() error { return a.trail.Close() }

// Note returns an audit event of an action outside the controller (apply
// started, an operator request).
func Note(rollout, device, action, outcome, detail, actor string) scheduler.Event {
	return scheduler.Event{Time: time.Now(), Rollout: rollout, Device: device, Action: action, Outcome: outcome, Detail: detail, Actor: actor}
}
