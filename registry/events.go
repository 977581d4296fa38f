package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/store"
)

// eventChunkBytes bounds one event log key.
const eventChunkBytes = 256 << 10

// appendEvents writes events to the log, in keys
// <prefix>registry-events/<unix-nanos>-<NNNN> of at most eventChunkBytes,
// each created with check-and-set 0, and prunes the oldest keys beyond
// MaxEventChunks.
func (r *Registry) appendEvents(ctx context.Context, events []Event, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	chunks, err := packEvents(events)
	if err != nil {
		return err
	}
	var ops consulapi.TxnOps
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := store.Txn(ctx, r.consul, ops)
		ops, size = nil, 0
		if err != nil {
			return fmt.Errorf("recording registry events: %w", err)
		}
		return nil
	}
	for _, c := range chunks {
		if len(ops) == store.MaxTxnOps || (len(ops) > 0 && size+len(c) > store.MaxTxnBytes) {
			if err := flush(); err != nil {
				return err
			}
		}
		// The sequence number keeps keys of one process distinct within a
		// nanosecond; processes differ in their clocks' nanoseconds, and a
		// collision fails the check-and-set rather than overwriting.
		key := fmt.Sprintf("%s%019d-%04d", r.eventsPrefix(), now.UnixNano(), r.eventSeq.Add(1)%10000)
		ops = append(ops, &consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVCAS, Key: key, Value: c, Index: 0}})
		size += len(c)
	}
	if err := flush(); err != nil {
		return err
	}
	return r.pruneEvents(ctx)
}

func packEvents(events []Event) ([][]byte, error) {
	var chunks [][]byte
	var buf bytes.Buffer
	for _, e := range events {
		b, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		if buf.Len() > 0 && buf.Len()+len(b)+2 > eventChunkBytes {
			buf.WriteByte(']')
			chunks = append(chunks, bytes.Clone(buf.Bytes()))
			buf.Reset()
		}
		if buf.Len() == 0 {
			buf.WriteByte('[')
		} else {
			buf.WriteByte(',')
		}
		buf.Write(b)
	}
	if buf.Len() > 0 {
		buf.WriteByte(']')
		chunks = append(chunks, bytes.Clone(buf.Bytes()))
	}
	return chunks, nil
}

// pruneEvents deletes the oldest event keys beyond MaxEventChunks.
func (r *Registry) pruneEvents(ctx context.Context) error {
	keys, _, err := r.kv.Keys(r.eventsPrefix(), "", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("listing the registry events: %w", err)
	}
	if len(keys) <= r.maxEventKeys {
		return nil
	}
	slices.Sort(keys)
	old := keys[:len(keys)-r.maxEventKeys]
	for start := 0; start < len(old); start += store.MaxTxnOps {
		var ops consulapi.TxnOps
		for _, k := range old[start:min(start+store.MaxTxnOps, len(old))] {
			ops = append(ops, &consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVDelete, Key: k}})
		}
		if _, err := store.Txn(ctx, r.consul, ops); err != nil {
			return fmt.Errorf("pruning the registry events: %w", err)
		}
	}
	return nil
}

// Events returns up to limit of the most recent events, oldest first, that
// match (all when match is nil). It reads the newest log keys backwards, in
// transactions of up to 64 reads, and stops after maxScan keys.
func (r *Registry) Events(ctx context.Context, limit int, match func(Event) bool) ([]Event, error) {
	const maxScan = 256
	keys, _, err := r.kv.Keys(r.eventsPrefix(), "", (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing the registry events: %w", err)
	}
	slices.Sort(keys)
	slices.Reverse(keys)
	if len(keys) > maxScan {
		keys = keys[:maxScan]
	}
	var out []Event // newest first
	for start := 0; start < len(keys) && (limit <= 0 || len(out) < limit); start += 16 {
		var ops consulapi.TxnOps
		for _, k := range keys[start:min(start+16, len(keys))] {
			ops = append(ops, &consulapi.TxnOp{KV: &consulapi.KVTxnOp{Verb: consulapi.KVGetOrEmpty, Key: k}})
		}
		res, err := store.Txn(ctx, r.consul, ops)
		if err != nil {
			return nil, fmt.Errorf("reading the registry events: %w", err)
		}
		for _, rr := range res {
			if rr.KV == nil || len(rr.KV.Value) == 0 {
				continue
			}
			var evs []Event
			if err := json.Unmarshal(rr.KV.Value, &evs); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", rr.KV.Key, err)
			}
			for i := len(evs) - 1; i >= 0; i-- {
				if match == nil || match(evs[i]) {
					out = append(out, evs[i])
				}
			}
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	slices.Reverse(out)
	return out, nil
}

// DeviceEvents returns the recent events of one device (by registry key or
// node name).
func (r *Registry) DeviceEvents(ctx context.Context, id, name string, limit int) ([]Event, error) {
	return r.Events(ctx, limit, func(e Event) bool {
		return e.Device == id || (name != "" && e.Name == name) || strings.TrimPrefix(e.Device, "consul:") == name
	})
}
