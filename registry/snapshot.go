package registry

// The registry as read from KV: one List, decoded (on a second goroutine
// for large fleets), reusing the previous sync's entries whose modify
// index did not move.

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// snapshot is the registry as read from KV.
type snapshot struct {
	devices map[string]scheduler.Device
	index   map[string]uint64
}

// load reads the whole registry in one request.
func (r *Registry) load(ctx context.Context) (snapshot, error) {
	pairs, err := r.store.RegistryEntries(ctx)
	if err != nil {
		return snapshot{}, err
	}
	return decodeSnapshot(r.devicesPrefix(), pairs)
}

// loadForSync is load with the entries decoded by the previous sync reused
// when their modify index did not move (most of them: a sync of a healthy
// fleet writes nothing), which saves most of a sync's CPU time on a large
// fleet. The snapshot is the cache itself, updated in place (here, and by
// planSync, which turns it into the next registry; Sync then drops the
// entries whose writes did not commit, so that every entry is what KV holds
// at the index the cache records); it shares its Meta and Apps maps with
// earlier observations, so it is only for Sync, which does not modify them.
func (r *Registry) loadForSync(ctx context.Context) (snapshot, error) {
	pairs, err := r.store.RegistryEntries(ctx)
	if err != nil {
		return snapshot{}, err
	}
	s, err := decodeSnapshotCached(r.devicesPrefix(), pairs, r.decoded)
	if err != nil {
		r.decoded = snapshot{} // possibly half updated
		return snapshot{}, err
	}
	r.decoded = s
	return s, nil
}

// decodeSnapshot decodes every registry entry; the devices share nothing
// (callers may change them).
func decodeSnapshot(prefix string, pairs consulapi.KVPairs) (snapshot, error) {
	return decodeAll(prefix, pairs, false)
}

// decodeSnapshotCached decodes the registry entries for a sync, reusing
// those of prev that are at the same modify index: prev (when it has
// devices) is updated in place, with the entries that moved decoded again
// and those no longer listed removed, and returned. On an error prev is
// left half updated: drop it. Entries with identical metadata or apps share
// one map: the sync never modifies them.
func decodeSnapshotCached(prefix string, pairs consulapi.KVPairs, prev snapshot) (snapshot, error) {
	if prev.devices != nil && prev.index != nil {
		return updateSnapshot(prefix, pairs, prev)
	}
	return decodeAll(prefix, pairs, true)
}

// decodeAll decodes every registry entry; with shareMaps, entries with
// identical metadata or apps share one map.
func decodeAll(prefix string, pairs consulapi.KVPairs, shareMaps bool) (snapshot, error) {
	s := snapshot{devices: make(map[string]scheduler.Device, len(pairs)), index: make(map[string]uint64, len(pairs))}
	in := interner{shareMaps: shareMaps}
	if len(pairs) >= pipelineMin && runtime.GOMAXPROCS(0) > 1 {
		if err := decodePipelined(prefix, pairs, &in, s); err != nil {
			return snapshot{}, err
		}
		return s, nil
	}
	for _, p := range pairs {
		key, ok := entryKey(prefix, p.Key)
		if !ok {
			continue
		}
		d, err := decodeEntry(p.Value, &in)
		if err != nil {
			return snapshot{}, fmt.Errorf("decoding %s: %w", p.Key, err)
		}
		d.ID = key
		s.devices[key] = d
		s.index[key] = p.ModifyIndex
	}
	return s, nil
}

// entryKey is the registry key of a KV key listed under prefix; false for
// anything but a device entry.
func entryKey(prefix, kvKey string) (string, bool) {
	key := strings.TrimPrefix(kvKey, prefix)
	return key, key != "" && !strings.Contains(key, "/")
}

// decodedEntry is an entry decodePipelined's second goroutine decoded.
type decodedEntry struct {
	key   string
	d     scheduler.Device
	index uint64
}

// decodePipelined is decodeAll's loop with the decoding on a second
// goroutine (the only user of in) and the storing into s on this one.
func decodePipelined(prefix string, pairs consulapi.KVPairs, in *interner, s snapshot) error {
	var decodeErr error // written by the decoder, read once pipeline returned
	pipeline(func(emit func(decodedEntry)) {
		for _, p := range pairs {
			key, ok := entryKey(prefix, p.Key)
			if !ok {
				continue
			}
			d, err := decodeEntry(p.Value, in)
			if err != nil {
				decodeErr = fmt.Errorf("decoding %s: %w", p.Key, err)
				return
			}
			d.ID = key
			emit(decodedEntry{key: key, d: d, index: p.ModifyIndex})
		}
	}, func(e *decodedEntry) {
		s.devices[e.key] = e.d
		s.index[e.key] = e.index
	})
	return decodeErr
}

// updateSnapshot is decodeSnapshotCached with a previous snapshot: one
// lookup per unchanged entry.
func updateSnapshot(prefix string, pairs consulapi.KVPairs, prev snapshot) (snapshot, error) {
	in := interner{shareMaps: true}
	known := len(prev.index)
	listed := 0 // entries of prev that pairs still list
	for _, p := range pairs {
		key, ok := entryKey(prefix, p.Key)
		if !ok {
			continue
		}
		idx, ok := prev.index[key]
		if ok {
			listed++
			if idx == p.ModifyIndex {
				continue
			}
		}
		d, err := decodeEntry(p.Value, &in)
		if err != nil {
			return snapshot{}, fmt.Errorf("decoding %s: %w", p.Key, err)
		}
		d.ID = key
		prev.devices[key] = d
		prev.index[key] = p.ModifyIndex
	}
	if listed < known {
		// Some entries were deleted: drop them.
		keep := make(map[string]struct{}, len(pairs))
		for _, p := range pairs {
			keep[strings.TrimPrefix(p.Key, prefix)] = struct{}{}
		}
		for key := range prev.index {
			if _, ok := keep[key]; !ok {
				delete(prev.index, key)
				delete(prev.devices, key)
			}
		}
	}
	return prev, nil
}
