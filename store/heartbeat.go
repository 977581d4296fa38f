package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// The controller service's leader heartbeat. Consul invalidates a session
// that is no longer renewed only between one and two TTLs after its last
// renewal; a standby that sees the leader's heartbeat stop for a whole TTL
// destroys the leader's session itself (controller.Reaper), so that a dead
// leader is replaced within about TTL plus the lock delay.
//
// The heartbeat key is written after each successful renewal of the
// leader's session, in one transaction with a check that the session still
// holds the leadership key: only the current leader can move it. Standbys
// look at its ModifyIndex only, timed on their own monotonic clock; its
// value is for people (no clock is compared across hosts).

// HeartbeatValue is the value of the heartbeat key.
type HeartbeatValue struct {
	Session string `json:"session"`
	Holder  string `json:"holder"`
	Seq     uint64 `json:"seq"`
}

// WriteHeartbeat writes the heartbeat key of the leader holding the lease
// leader (the leadership key), bound to its session: when the session no
// longer holds the key nothing is written and the error wraps
// scheduler.ErrLockLost.
func (c *Consul) WriteHeartbeat(ctx context.Context, leader *Lease, holder string, seq uint64) error {
	value, err := json.Marshal(HeartbeatValue{Session: leader.s.id, Holder: holder, Seq: seq})
	if err != nil {
		return fmt.Errorf("encoding the controller heartbeat: %w", err)
	}
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: leader.key, Session: leader.s.id}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: c.layout.Heartbeat(), Value: value}},
	}
	if _, err := c.txn(ctx, ops); err != nil {
		return fmt.Errorf("writing the controller heartbeat %s: %w", c.layout.Heartbeat(), err)
	}
	return nil
}

// Heartbeat writes the heartbeat of the leader holding leader at once,
// then after each successful renewal of its session, until ctx ends or the
// lease is lost. A write that fails is logged (the lease's own watch and
// fence say whether the leadership is lost); standbys then reap the
// session, which only costs availability.
func (c *Consul) Heartbeat(ctx context.Context, leader *Lease, holder string) {
	log := c.logger.Named("heartbeat").With("key", c.layout.Heartbeat(), "session", leader.s.id)
	var seq uint64
	for {
		seq++
		wctx, cancel := context.WithTimeout(ctx, max(leader.s.ttl/3, time.Second))
		err := c.WriteHeartbeat(wctx, leader, holder, seq)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			log.Warn("could not write the leader's heartbeat; the standbys destroy this session if it stays silent for a TTL", "seq", seq, "error", err)
		default:
			log.Trace("heartbeat written", "seq", seq)
		}
		select {
		case <-ctx.Done():
			return
		case <-leader.Lost():
			return
		case <-leader.s.Renewed():
		}
	}
}

// LeadershipView is the leadership key and the heartbeat as a standby sees
// them.
type LeadershipView struct {
	// Session holds the leadership key ("" when free); Holder names it.
	Session string
	Holder  string
	// HeartbeatIndex is the heartbeat key's ModifyIndex (0 when absent);
	// Heartbeat is its value.
	HeartbeatIndex uint64
	Heartbeat      HeartbeatValue
}

// WatchLeadership reads the leadership key and the heartbeat (one blocking
// query on <root>controller/): it returns once either changed after
// waitIndex (0 returns at once) or wait passed, with the index to wait on
// next.
func (c *Consul) WatchLeadership(ctx context.Context, waitIndex uint64, wait time.Duration) (LeadershipView, uint64, error) {
	var v LeadershipView
	folder := c.layout.Controller()
	pairs, meta, err := c.kv.List(folder, (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return v, 0, fmt.Errorf("watching the controller leadership in Consul (%s): %w", folder, err)
	}
	for _, p := range pairs {
		switch p.Key {
		case c.layout.Leader():
			v.Session = p.Session
			if p.Session != "" {
				var lv lockValue
				_ = json.Unmarshal(p.Value, &lv)
				v.Holder = lv.Holder
				if v.Holder == "" {
					v.Holder = "session " + p.Session
				}
			}
		case c.layout.Heartbeat():
			v.HeartbeatIndex = p.ModifyIndex
			_ = json.Unmarshal(p.Value, &v.Heartbeat)
		}
	}
	return v, meta.LastIndex, nil
}

// DestroySession destroys another process's session (a silent leader's):
// Consul releases every key it holds, after its lock delay.
func (c *Consul) DestroySession(ctx context.Context, id string) error {
	if _, err := c.client.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("destroying the Consul session %s: %w", id, err)
	}
	return nil
}
