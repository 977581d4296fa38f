package command

import (
	"context"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	consulapi "github.com/hashicorp/consul/api"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/operator"
)

// watchStatus follows a rollout until it finishes: the live view in a
// terminal, plain timestamped lines otherwise. Both wait on a blocking
// query of the rollout's keys and read the rollout again only when one of
// them changed (at most once a second): an idle view costs nothing.
func watchStatus(c *cli.Context, op *operator.Operator, app string) error {
	if _, err := op.LoadRun(c.Context, app); err != nil {
		return operatorError(err)
	}
	load := op.Loader(app)
	changes := rolloutChanges(op, app)
	if !isTerminal(c.App.Writer) {
		return plainWatch(c.Context, c.App.Writer, load, changes)
	}
	m := newLiveModel(c.Context, load, nil)
	m.changes = changes
	_, err := tea.NewProgram(m, tea.WithContext(c.Context)).Run()
	if err != nil && c.Context.Err() == nil {
		return exit(ExitInternal, "live view: %v", err)
	}
	return nil
}

// changesFunc blocks until something changed after index (0: answers at
// once) or ctx ends, and returns the new index.
type changesFunc func(ctx context.Context, index uint64) (uint64, error)

// viewTiming paces the views' blocking queries: at most one reload a
// second, a query open for up to 5 minutes, failed queries retried from
// 1 s to 10 s.
var viewTiming = blocking.Timing{
	MinInterval: time.Second,
	BackoffBase: time.Second,
	BackoffMax:  10 * time.Second,
	WaitTime:    5 * time.Minute,
}

// rolloutChanges follows the keys of a rollout's folder (its state, one
// key per device, its request, controls and lock) with one blocking query
// that lists them one level deep: its index moves with any write below.
// Nil without a Consul client (the views then poll).
func rolloutChanges(op *operator.Operator, app string) changesFunc {
	if op == nil || op.Consul == nil || op.Store == nil {
		return nil
	}
	kv, prefix := op.Consul.KV(), op.Store.Layout().Rollout(app)
	return func(ctx context.Context, index uint64) (uint64, error) {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: viewTiming.WaitTime}).WithContext(ctx)
		_, meta, err := kv.Keys(prefix, "/", q)
		if err != nil {
			return index, err
		}
		return meta.LastIndex, nil
	}
}

// changeWaiter turns a changesFunc into a wait for the next change: it
// keeps the index, spaces the reloads by viewTiming.MinInterval and backs
// off on errors (a view shows the last state it read meanwhile).
type changeWaiter struct {
	changes  changesFunc
	index    uint64
	first    bool
	last     time.Time
	failures int
}

func newChangeWaiter(changes changesFunc) *changeWaiter {
	return &changeWaiter{changes: changes, first: true}
}

// next returns when the rollout's keys changed since the last call (the
// first call returns at once), or with ctx's error.
func (w *changeWaiter) next(ctx context.Context) error {
	for {
		if d := viewTiming.Pause(blocking.Clock{}, w.last); d > 0 {
			if err := blocking.Sleep(ctx, d); err != nil {
				return err
			}
		}
		got, err := w.changes(ctx, w.index)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			w.failures++
			if err := blocking.Sleep(ctx, viewTiming.RetryIn(blocking.Clock{}, w.failures)); err != nil {
				return err
			}
			continue
		}
		w.failures = 0
		next, changed := blocking.NextIndex(w.index, got, w.first)
		w.index, w.first = next, false
		if changed {
			w.last = time.Now()
			return nil
		}
	}
}
