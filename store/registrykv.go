package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/consul/api"
)

// The device registry's keys (Layout.Registry, Layout.RegistryEvents), the
// agents' health configuration and the list of rollouts.

// RegistryEntries returns every registry entry (one request), as stored
// under Layout().Registry().
func (c *Consul) RegistryEntries(ctx context.Context) (api.KVPairs, error) {
	prefix := c.layout.Registry()
	pairs, _, err := c.kv.List(prefix, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the registry (%s) from Consul: %w", prefix, err)
	}
	return pairs, nil
}

// RegistryEntry returns one registry entry, or nil.
func (c *Consul) RegistryEntry(ctx context.Context, id string) (*api.KVPair, error) {
	pair, _, err := c.kv.Get(c.layout.RegistryDevice(id), c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the registry from Consul: %w", err)
	}
	return pair, nil
}

// RegistryWrite is one check-and-set write of a registry entry.
type RegistryWrite struct {
	ID    string
	Value []byte // nil: delete
	Index uint64
}

// WriteRegistry applies the writes in transactions of up to MaxTxnOps
// operations and returns how many of them (from the first) committed. A
// lost check-and-set stops it with an error wrapping scheduler.ErrConflict.
func (c *Consul) WriteRegistry(ctx context.Context, writes []RegistryWrite) (int, error) {
	ops := make(api.TxnOps, 0, len(writes))
	for _, w := range writes {
		if len(w.Value) > MaxValueBytes {
			return 0, fmt.Errorf("registry entry %s is %d bytes, over the %d bytes a Consul value can hold", w.ID, len(w.Value), MaxValueBytes)
		}
		kv := &api.KVTxnOp{Key: c.layout.RegistryDevice(w.ID), Index: w.Index}
		if w.Value == nil {
			kv.Verb = api.KVDeleteCAS
		} else {
			kv.Verb, kv.Value = api.KVCAS, w.Value
		}
		ops = append(ops, &api.TxnOp{KV: kv})
	}
	_, n, err := runTxns(ctx, c.client, ops)
	if err != nil {
		return n, fmt.Errorf("writing the registry: %w", err)
	}
	return n, nil
}

// eventSeq keeps the event chunk keys of one process distinct within a
// nanosecond; processes differ in their clocks' nanoseconds, and a collision
// fails the check-and-set rather than overwriting.
var eventSeq atomic.Uint32

// AppendRegistryEvents writes events (encoded records) to the registry's
// event log as new chunks (EventChunks) named by now, and then prunes the
// oldest chunks beyond keep.
func (c *Consul) AppendRegistryEvents(ctx context.Context, recs []json.RawMessage, now time.Time, keep int) error {
	if len(recs) == 0 {
		return nil
	}
	err := NewAppender(c.client, EventChunks).WriteNew(ctx, recs, func(int) string {
		return c.layout.RegistryEventChunk(now.UnixNano(), eventSeq.Add(1))
	})
	if err != nil {
		return fmt.Errorf("recording registry events: %w", err)
	}
	return c.pruneRegistryEvents(ctx, keep)
}

// pruneRegistryEvents deletes the oldest event chunks beyond keep.
func (c *Consul) pruneRegistryEvents(ctx context.Context, keep int) error {
	keys, _, err := c.kv.Keys(c.layout.RegistryEvents(), "", c.query(ctx))
	if err != nil {
		return fmt.Errorf("listing the registry events: %w", err)
	}
	if len(keys) <= keep {
		return nil
	}
	slices.Sort(keys)
	old := keys[:len(keys)-keep]
	ops := make(api.TxnOps, 0, len(old))
	for _, k := range old {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVDelete, Key: k}})
	}
	if _, _, err := runTxns(ctx, c.client, ops); err != nil {
		return fmt.Errorf("pruning the registry events: %w", err)
	}
	return nil
}

// RegistryEventChunks calls visit with the event chunks (JSON arrays),
// newest first, at most maxScan of them, reading them in transactions of 16
// reads; it stops when visit returns false.
func (c *Consul) RegistryEventChunks(ctx context.Context, maxScan int, visit func(key string, chunk []byte) (more bool, err error)) error {
	keys, _, err := c.kv.Keys(c.layout.RegistryEvents(), "", c.query(ctx))
	if err != nil {
		return fmt.Errorf("listing the registry events: %w", err)
	}
	slices.Sort(keys)
	slices.Reverse(keys)
	if len(keys) > maxScan {
		keys = keys[:maxScan]
	}
	for start := 0; start < len(keys); start += 16 {
		var ops api.TxnOps
		for _, k := range keys[start:min(start+16, len(keys))] {
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}})
		}
		res, err := runTxn(ctx, c.client, ops)
		if err != nil {
			return fmt.Errorf("reading the registry events: %w", err)
		}
		for _, rr := range res {
			if rr.KV == nil || len(rr.KV.Value) == 0 {
				continue
			}
			if more, err := visit(rr.KV.Key, rr.KV.Value); err != nil || !more {
				return err
			}
		}
	}
	return nil
}

// PutAgentConfig writes an application's agent health configuration (JSON)
// at AgentConfigKey(folder, app); the device agents follow the folder.
func (c *Consul) PutAgentConfig(ctx context.Context, folder, app string, value []byte) error {
	if err := checkName("application name", app); err != nil {
		return err
	}
	key := AgentConfigKey(folder, app)
	if _, err := c.kv.Put(&api.KVPair{Key: key, Value: value}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("writing the agent config of %s to Consul KV %s: %w", app, key, err)
	}
	return nil
}

// Rollouts lists the names of the rollouts that have state in Consul.
func (c *Consul) Rollouts(ctx context.Context) ([]string, error) {
	prefix := c.layout.Rollouts()
	keys, _, err := c.kv.Keys(prefix, "/", c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", prefix, err)
	}
	var out []string
	for _, k := range keys {
		if name := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "/"); name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}
