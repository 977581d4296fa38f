package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Archive moves a finished run to .../history/<id>/: it writes the device
// records in chunks and then the state, and then removes the current run
// (its state with check-and-set on r.Index, and its device records) in one
// transaction, so that the next run starts from an empty slot. It is safe to
// call again after a crash at any point: a complete archive (its state key
// exists) is not written twice, an incomplete one is rewritten.
func (c *Consul) Archive(ctx context.Context, r *scheduler.Rollout) error {
	if err := checkName("rollout name", r.App); err != nil {
		return err
	}
	if err := checkName("run ID", r.ID); err != nil {
		return err
	}
	devs := r.Devices
	if devs == nil {
		var err error
		if devs, err = c.loadDevices(ctx, r.App); err != nil {
			return err
		}
	}
	stateKey := c.layout.RunState(r.App, r.ID)
	done, _, err := c.kv.Get(stateKey, c.query(ctx))
	if err != nil {
		return fmt.Errorf("reading %s from Consul: %w", stateKey, err)
	}
	if done == nil {
		if err := c.writeArchive(ctx, r, devs); err != nil {
			return fmt.Errorf("archiving run %s of %s: %w", r.ID, r.App, err)
		}
	}
	_, err = c.txn(ctx, api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVDeleteTree, Key: c.devicesPrefix(r.App)}},
		{KV: &api.KVTxnOp{Verb: api.KVDeleteCAS, Key: c.stateKey(r.App), Index: r.Index}},
	})
	if err != nil {
		return fmt.Errorf("removing the archived run %s of %s: %w", r.ID, r.App, err)
	}
	r.Index = 0
	return nil
}

func (c *Consul) writeArchive(ctx context.Context, r *scheduler.Rollout, devs map[string]*scheduler.DeviceRecord) error {
	// Leftovers of an interrupted attempt.
	base := c.layout.Run(r.App, r.ID)
	if _, err := c.kv.DeleteTree(base, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("clearing %s: %w", base, err)
	}
	recs, err := archiveRecords(devs)
	if err != nil {
		return err
	}
	err = NewAppender(c.client, ArchiveChunks).WriteNew(ctx, recs, func(i int) string { return c.layout.RunDeviceChunk(r.App, r.ID, i) })
	if err != nil {
		return err
	}
	state, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding rollout %s: %w", r.App, err)
	}
	_, err = c.cas(ctx, c.layout.RunState(r.App, r.ID), state, 0)
	return err
}

// archiveRecords encodes device records, sorted by ID, for the archive's
// chunks (ArchiveChunks).
func archiveRecords(devs map[string]*scheduler.DeviceRecord) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(devs))
	for id := range devs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]json.RawMessage, 0, len(ids))
	for _, id := range ids {
		rec, err := json.Marshal(devs[id])
		if err != nil {
			return nil, fmt.Errorf("encoding device %s: %w", id, err)
		}
		if len(rec)+2 > MaxValueBytes {
			return nil, fmt.Errorf("device record %s is %d bytes, over the %d bytes a Consul value can hold", id, len(rec), MaxValueBytes)
		}
		out = append(out, rec)
	}
	return out, nil
}

// History returns the archived runs of a rollout, newest first, without
// their devices (LoadRun has them). It lists the run folders and reads their
// states in transactions of up to 64 reads: a handful of requests, not one
// per run.
func (c *Consul) History(ctx context.Context, app string) ([]*scheduler.Rollout, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	prefix := c.historyPrefix(app)
	dirs, _, err := c.kv.Keys(prefix, "/", c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", prefix, err)
	}
	var keys []string
	for _, d := range dirs {
		if strings.HasSuffix(d, "/") {
			keys = append(keys, d+"state")
		}
	}
	ops := make(api.TxnOps, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: k}})
	}
	res, _, err := runTxns(ctx, c.client, ops)
	if err != nil {
		return nil, err
	}
	var out []*scheduler.Rollout
	for _, rr := range res {
		if rr.KV == nil || len(rr.KV.Value) == 0 {
			continue // an archive being written
		}
		r := new(scheduler.Rollout)
		if err := json.Unmarshal(rr.KV.Value, r); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", rr.KV.Key, err)
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b *scheduler.Rollout) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(b.ID, a.ID)
	})
	return out, nil
}

// LoadRun returns one run of a rollout with its devices: an archived run, or
// the current one when id names it. Archived runs have Index 0 (they are
// read-only). An unknown run yields an error wrapping ErrNotFound.
func (c *Consul) LoadRun(ctx context.Context, app, id string) (*scheduler.Rollout, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	if err := checkName("run ID", id); err != nil {
		return nil, err
	}
	stateKey := c.layout.RunState(app, id)
	pair, _, err := c.kv.Get(stateKey, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading %s from Consul: %w", stateKey, err)
	}
	if pair == nil {
		cur, err := c.Load(ctx, app)
		if err != nil {
			return nil, err
		}
		if cur != nil && cur.ID == id {
			return cur, nil
		}
		return nil, fmt.Errorf("run %s of rollout %s: %w", id, app, ErrNotFound)
	}
	r := new(scheduler.Rollout)
	if err := json.Unmarshal(pair.Value, r); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", pair.Key, err)
	}
	recs, err := ReadChunks[*scheduler.DeviceRecord](ctx, c.client, c.layout.RunDevices(app, id))
	if err != nil {
		return nil, err
	}
	r.Devices = make(map[string]*scheduler.DeviceRecord, len(recs))
	for _, d := range recs {
		r.Devices[d.ID] = d
	}
	return r, nil
}
