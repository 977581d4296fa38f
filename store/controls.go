package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Controls returns the operators' requests and the index to wait on next.
// With waitIndex > 0 it is a blocking query on the control prefix: it
// returns when a request is written or removed, when wait ends (Consul's
// default of 5 minutes when wait is 0) or when ctx ends (ctx.Err()).
// The returned index is at least 1, as Consul advises.
func (c *Consul) Controls(ctx context.Context, app string, waitIndex uint64, wait time.Duration) (scheduler.Controls, uint64, error) {
	var out scheduler.Controls
	if err := checkName("rollout name", app); err != nil {
		return out, 0, err
	}
	prefix := c.controlPrefix(app)
	q := &api.QueryOptions{}
	if waitIndex > 0 {
		q.WaitIndex = waitIndex
		q.WaitTime = wait
	}
	pairs, meta, err := c.kv.List(prefix, q.WithContext(ctx))
	if err != nil {
		if ctx.Err() != nil {
			return out, waitIndex, ctx.Err()
		}
		return out, waitIndex, fmt.Errorf("reading the controls of %s from Consul: %w", app, err)
	}
	for _, p := range pairs {
		var dst any
		switch strings.TrimPrefix(p.Key, prefix) {
		case controlApproval:
			out.Approval = new(scheduler.ApprovalRecord)
			dst = out.Approval
		case controlPause:
			out.Pause = new(scheduler.Request)
			dst = out.Pause
		case controlRollback:
			out.Rollback = new(scheduler.Request)
			dst = out.Rollback
		default:
			continue
		}
		if err := json.Unmarshal(p.Value, dst); err != nil {
			return out, waitIndex, fmt.Errorf("decoding %s: %w", p.Key, err)
		}
	}
	idx := meta.LastIndex
	if idx == 0 {
		idx = 1
	}
	return out, idx, nil
}

// ClearControls removes the operators' requests (when a new run starts),
// each with check-and-set on the index it was read at.
func (c *Consul) ClearControls(ctx context.Context, app string) error {
	if err := checkName("rollout name", app); err != nil {
		return err
	}
	prefix := c.controlPrefix(app)
	pairs, _, err := c.kv.List(prefix, c.query(ctx))
	if err != nil {
		return fmt.Errorf("listing %s in Consul: %w", prefix, err)
	}
	if len(pairs) == 0 {
		return nil
	}
	ops := make(api.TxnOps, 0, len(pairs))
	for _, p := range pairs {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: p.Key, Index: p.ModifyIndex}})
	}
	_, err = c.txn(ctx, ops)
	return err
}

// Approve records an operator's approval of the canary of the rollout's
// current run. rec.Time defaults to now and rec.Actor to user@host. It
// fails with ErrNoRun when no run is in progress and with
// ErrAlreadyRequested when the run is already approved.
func (c *Consul) Approve(ctx context.Context, app string, rec *scheduler.ApprovalRecord) error {
	if rec == nil {
		rec = &scheduler.ApprovalRecord{}
	}
	if rec.Actor == "" {
		rec.Actor = DefaultActor()
	}
	if rec.Time.IsZero() {
		rec.Time = c.now().UTC()
	}
	return c.request(ctx, app, controlApproval, rec, func(old []byte) error {
		var prev scheduler.ApprovalRecord
		_ = json.Unmarshal(old, &prev)
		return fmt.Errorf("rollout %s was already approved by %s at %s: %w", app, prev.Actor, prev.Time.Format(time.RFC3339), ErrAlreadyRequested)
	})
}

// RequestPause asks the controller to pause the rollout after the device
// switches in flight. ErrAlreadyRequested when it is already paused.
func (c *Consul) RequestPause(ctx context.Context, app string, req *scheduler.Request) error {
	req = c.fillRequest(req)
	return c.request(ctx, app, controlPause, req, func(old []byte) error {
		var prev scheduler.Request
		_ = json.Unmarshal(old, &prev)
		return fmt.Errorf("rollout %s was already paused by %s at %s: %w", app, prev.Actor, prev.Time.Format(time.RFC3339), ErrAlreadyRequested)
	})
}

// RequestRollback asks the controller to roll the rollout back.
// ErrAlreadyRequested when a rollback is already requested.
func (c *Consul) RequestRollback(ctx context.Context, app string, req *scheduler.Request) error {
	req = c.fillRequest(req)
	return c.request(ctx, app, controlRollback, req, func(old []byte) error {
		var prev scheduler.Request
		_ = json.Unmarshal(old, &prev)
		return fmt.Errorf("a rollback of %s was already requested by %s at %s: %w", app, prev.Actor, prev.Time.Format(time.RFC3339), ErrAlreadyRequested)
	})
}

// RequestResume withdraws the pause request. ErrNotPaused when there is
// none.
func (c *Consul) RequestResume(ctx context.Context, app string) error {
	if err := c.requireRun(ctx, app); err != nil {
		return err
	}
	key := c.controlPrefix(app) + controlPause
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return fmt.Errorf("reading %s from Consul: %w", key, err)
	}
	if pair == nil {
		return fmt.Errorf("rollout %s: %w", app, ErrNotPaused)
	}
	_, err = c.txn(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: key, Index: pair.ModifyIndex}}})
	return err
}

func (c *Consul) fillRequest(req *scheduler.Request) *scheduler.Request {
	if req == nil {
		req = &scheduler.Request{}
	}
	if req.Actor == "" {
		req.Actor = DefaultActor()
	}
	if req.Time.IsZero() {
		req.Time = c.now().UTC()
	}
	return req
}

// request writes a control key that must not exist yet; exists builds the
// error for one that does.
func (c *Consul) request(ctx context.Context, app, name string, v any, exists func(old []byte) error) error {
	if err := c.requireRun(ctx, app); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding the %s request: %w", name, err)
	}
	key := c.controlPrefix(app) + name
	_, err = c.cas(ctx, key, data, 0)
	if errors.Is(err, scheduler.ErrConflict) {
		pair, _, gerr := c.kv.Get(key, c.query(ctx))
		if gerr == nil && pair != nil {
			return exists(pair.Value)
		}
	}
	return err
}

// requireRun fails with ErrNoRun unless the rollout has an unfinished run.
func (c *Consul) requireRun(ctx context.Context, app string) error {
	r, err := c.LoadState(ctx, app)
	if err != nil {
		return err
	}
	if r == nil {
		return fmt.Errorf("rollout %s: %w", app, ErrNoRun)
	}
	if r.Finished() {
		return fmt.Errorf("rollout %s: run %s already finished (%s): %w", app, r.ID, r.Outcome, ErrNoRun)
	}
	return nil
}
