package operator

import (
	"context"
	"fmt"

	"github.com/fleetplan/fleetplan/scheduler"
)

// LoadRun returns the current run of a rollout with its devices; a rollout
// that has no state is Refused.
func (o *Operator) LoadRun(ctx context.Context, app string) (*scheduler.Rollout, error) {
	r, err := o.Store.Load(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("reading rollout %q: %w", app, err)
	}
	if r == nil {
		return nil, refused("no rollout named %q (list them with `fleetplan status`)", app)
	}
	return r, nil
}

// Loader returns a function that reads the current run of app, for views
// that follow it.
func (o *Operator) Loader(app string) func(context.Context) (*scheduler.Rollout, error) {
	return func(ctx context.Context) (*scheduler.Rollout, error) { return o.Store.Load(ctx, app) }
}

// Rollouts returns the current run of every rollout, without devices.
func (o *Operator) Rollouts(ctx context.Context) ([]*scheduler.Rollout, error) {
	apps, err := o.Store.Rollouts(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing rollouts: %w", err)
	}
	var runs []*scheduler.Rollout
	for _, app := range apps {
		r, err := o.Store.LoadState(ctx, app)
		if err != nil {
			return nil, fmt.Errorf("reading rollout %q: %w", app, err)
		}
		if r != nil {
			runs = append(runs, r)
		}
	}
	return runs, nil
}

// Runs returns the archived runs of a rollout, newest first, and then its
// current one, without devices.
func (o *Operator) Runs(ctx context.Context, app string) ([]*scheduler.Rollout, error) {
	runs, err := o.Store.History(ctx, app)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %q: %w", app, err)
	}
	if cur, err := o.Store.LoadState(ctx, app); err == nil && cur != nil {
		runs = append(runs, cur)
	}
	return runs, nil
}

// LoadRunByID returns one run of a rollout, archived or current, with its
// devices; an unknown one is Refused.
func (o *Operator) LoadRunByID(ctx context.Context, app, id string) (*scheduler.Rollout, error) {
	cur, err := o.Store.Load(ctx, app)
	if err == nil && cur != nil && cur.ID == id {
		return cur, nil
	}
	r, err := o.Store.LoadRun(ctx, app, id)
	if err != nil {
		return nil, refused("no run %q of rollout %q: %v (list them with `fleetplan report -runs %s`)", id, app, err, app)
	}
	return r, nil
}
