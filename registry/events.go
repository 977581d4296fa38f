package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/store"
)

// appendEvents writes events to the log through the store (new chunks of
// at most store.EventChunkBytes, each created with check-and-set 0) and
// prunes the oldest chunks beyond MaxEventChunks.
func (r *Registry) appendEvents(ctx context.Context, events []Event, now time.Time) error {
	recs, err := store.Encode(events)
	if err != nil {
		return err
	}
	return r.store.AppendRegistryEvents(ctx, recs, now, r.maxEventKeys)
}

// Events returns up to limit of the most recent events, oldest first, that
// match (all when match is nil). It reads the newest log keys backwards, in
// transactions of up to 16 reads, and stops after maxScan keys.
func (r *Registry) Events(ctx context.Context, limit int, match func(Event) bool) ([]Event, error) {
	const maxScan = 256
	var out []Event // newest first
	err := r.store.RegistryEventChunks(ctx, maxScan, func(key string, chunk []byte) (bool, error) {
		var evs []Event
		if err := json.Unmarshal(chunk, &evs); err != nil {
			return false, fmt.Errorf("decoding %s: %w", key, err)
		}
		for i := len(evs) - 1; i >= 0; i-- {
			if match == nil || match(evs[i]) {
				out = append(out, evs[i])
			}
		}
		return limit <= 0 || len(out) < limit, nil
	})
	if err != nil {
		return nil, err
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
