package command

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/hashicorp/go-hclog"
)

// notifiers tells the configured notifier plugins about phase changes,
// approvals needed, rollbacks and the end of a rollout.
type notifiers struct {
	list []plugin.Notifier
	log  hclog.Logger
	// Notifications are sent in order by one goroutine, so that a slow
	// webhook never holds up the controller.
	queue chan plugin.Notification
	done  chan struct{}
}

// newNotifiers builds notifiers from -notify specs: "NAME" or
// "NAME:key=value,key=value" (e.g. "log", "webhook:url=https://hooks.example/x").
func newNotifiers(ctx context.Context, specs []string, log hclog.Logger) (*notifiers, error) {
	n := &notifiers{log: log.Named("notify")}
	for _, spec := range specs {
		name, rest, _ := strings.Cut(spec, ":")
		p, err := plugin.NewNotifier(name)
		if err != nil {
			return nil, fmt.Errorf("-notify %q: %w", spec, err)
		}
		cfg := map[string]string{}
		if rest != "" {
			for _, kv := range strings.Split(rest, ",") {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return nil, fmt.Errorf("-notify %q: %q is not key=value", spec, kv)
				}
				cfg[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		if ls, ok := p.(plugin.LoggerSetter); ok {
			ls.SetLogger(n.log)
		}
		if err := p.SetConfig(ctx, cfg); err != nil {
			return nil, fmt.Errorf("-notify %q: %w", spec, err)
		}
		n.list = append(n.list, p)
	}
	n.queue = make(chan plugin.Notification, 256)
	n.done = make(chan struct{})
	go n.run(ctx)
	return n, nil
}

func (n *notifiers) run(ctx context.Context) {
	defer close(n.done)
	for note := range n.queue {
		for _, p := range n.list {
			nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if err := p.Notify(nctx, note); err != nil {
				n.log.Warn("notifier failed", "notifier", p.PluginInfo().Name, "kind", note.Kind, "error", err)
			}
			cancel()
		}
	}
}

// Close sends what is queued (waiting at most a minute) and stops.
func (n *notifiers) Close() {
	if n == nil || n.queue == nil {
		return
	}
	close(n.queue)
	select {
	case <-n.done:
	case <-time.After(time.Minute):
		n.log.Warn("notifications still queued at exit were dropped")
	}
}

// kinds maps controller events to notification kinds.
func notificationKind(e scheduler.Event) string {
	switch {
	case e.Action == "await-approval" && e.Outcome == "waiting":
		return plugin.NotifyApprovalNeeded
	case e.Action == "decision:rollback", e.Action == "decision:rolled-back", e.Action == "decision:halted",
		e.Action == "decision:rollback-incomplete":
		return plugin.NotifyRollback
	case e.Action == "decision:confirmed":
		return plugin.NotifyDone
	case e.Action == "decision:gate-passed", e.Action == "decision:approved", e.Action == "decision:validated",
		e.Action == "decision:paused", e.Action == "decision:resumed":
		return plugin.NotifyPhaseChange
	}
	return ""
}

// Event notifies every notifier of an event that matters to people. A
// notifier that fails is logged: notifications never stop a rollout.
func (n *notifiers) Event(ctx context.Context, e scheduler.Event, version string) {
	if n == nil || len(n.list) == 0 {
		return
	}
	kind := notificationKind(e)
	if kind == "" {
		return
	}
	msg := e.Detail
	if msg == "" {
		msg = e.Action
	}
	note := plugin.Notification{Kind: kind, Time: e.Time, Rollout: e.Rollout, RunID: e.RunID, Version: version, Phase: string(e.Phase), Message: msg}
	if d := e.Decision; d != nil {
		note.Numbers = d.Numbers
		if a := d.Analysis; a != nil {
			note.Analysis = &plugin.FailureAnalysis{Kind: string(a.Kind), Summary: a.String(), Classes: a.Classes, Layer: a.Layer, Examples: a.Examples}
		}
	}
	if hint := eventHint(e); hint != "" {
		note.Message += "; " + hint
	}
	select {
	case n.queue <- note:
	default:
		n.log.Warn("notification queue full; dropped a notification", "kind", kind, "rollout", e.Rollout)
	}
}
