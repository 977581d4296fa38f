package simfleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Store is an in-memory stand-in for Consul KV behind scheduler.Store:
// one key per rollout state, per device record, per active slot and for
// the operators' requests, each with its modify index; writes are
// check-and-set on that index (scheduler.ErrConflict when it moved), and
// Controls is a blocking query on the requests' index with a wait time on
// the simulated clock.
//
// Records are encoded as the Consul store encodes them (JSON), so that
// writes cost what they cost; unless KeepRecords is set, only the state
// and its index are kept of device records (what a 100,000-device run
// needs), so that the fake's own memory stays out of the controller's.
type Store struct {
	clock *Clock
	// KeepRecords keeps every device record's bytes, so that Load returns
	// the devices (a resumed controller).
	KeepRecords bool

	mu       sync.Mutex
	index    uint64
	state    map[string]kvEntry // app -> rollout state
	devices  map[string]map[string]kvEntry
	active   map[string]kvEntry
	controls map[string]kvEntry
	history  int
	changed  chan struct{}

	rolloutWrites atomic.Int64
	deviceWrites  atomic.Int64
	deviceTxns    atomic.Int64 // device write requests (a batch is one)
	bytesWritten  atomic.Int64
	conflicts     atomic.Int64
	polls         atomic.Int64
}

type kvEntry struct {
	value []byte
	index uint64
}

// NewStore returns an empty store.
func NewStore(clock *Clock) *Store {
	return &Store{
		clock:    clock,
		index:    1,
		state:    map[string]kvEntry{},
		devices:  map[string]map[string]kvEntry{},
		active:   map[string]kvEntry{},
		controls: map[string]kvEntry{},
		changed:  make(chan struct{}),
	}
}

var _ scheduler.Store = (*Store)(nil)

// cas writes value under m[key] if its index is want (0: absent), under
// s.mu, and returns the new index.
func (s *Store) cas(m map[string]kvEntry, key string, value []byte, want uint64, what string) (uint64, error) {
	if cur := m[key]; cur.index != want {
		s.conflicts.Add(1)
		return 0, fmt.Errorf("writing %s at index %d (now %d): %w", what, want, cur.index, scheduler.ErrConflict)
	}
	s.index++
	m[key] = kvEntry{value: value, index: s.index}
	s.bytesWritten.Add(int64(len(value)))
	return s.index, nil
}

// Load implements scheduler.Store.
func (s *Store) Load(ctx context.Context, app string) (*scheduler.Rollout, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.state[app]
	if !ok {
		return nil, nil
	}
	r := new(scheduler.Rollout)
	if err := json.Unmarshal(e.value, r); err != nil {
		return nil, fmt.Errorf("decoding the state of %s: %w", app, err)
	}
	r.Index = e.index
	r.Devices = make(map[string]*scheduler.DeviceRecord, len(s.devices[app]))
	for id, de := range s.devices[app] {
		if de.value == nil {
			return nil, fmt.Errorf("loading device %s of %s: the simulated store keeps no device records (set KeepRecords)", id, app)
		}
		d := new(scheduler.DeviceRecord)
		if err := json.Unmarshal(de.value, d); err != nil {
			return nil, fmt.Errorf("decoding device %s of %s: %w", id, app, err)
		}
		d.Index = de.index
		r.Devices[id] = d
	}
	return r, nil
}

// SaveRollout implements scheduler.Store.
func (s *Store) SaveRollout(ctx context.Context, r *scheduler.Rollout) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding rollout %s: %w", r.App, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.cas(s.state, r.App, data, r.Index, "the state of "+r.App)
	if err != nil {
		return err
	}
	s.rolloutWrites.Add(1)
	r.Index = idx
	return nil
}

// SaveDevice implements scheduler.Store.
func (s *Store) SaveDevice(ctx context.Context, app string, d *scheduler.DeviceRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding device %s: %w", d.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deviceTxns.Add(1)
	return s.saveDeviceLocked(app, d, data)
}

// SaveDevices implements scheduler.Store: one transaction (all or
// nothing) per call, as the Consul store writes a batch of at most
// scheduler.DeviceBatch records.
func (s *Store) SaveDevices(ctx context.Context, app string, recs []*scheduler.DeviceRecord) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	values := make([][]byte, len(recs))
	for i, d := range recs {
		data, err := json.Marshal(d)
		if err != nil {
			return 0, fmt.Errorf("encoding device %s: %w", d.ID, err)
		}
		values[i] = data
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.devices[app]
	seen := make(map[string]bool, len(recs))
	for _, d := range recs {
		if cur := m[d.ID]; cur.index != d.Index || seen[d.ID] {
			s.conflicts.Add(1)
			return 0, fmt.Errorf("writing device %s of %s at index %d (now %d): %w", d.Name, app, d.Index, cur.index, scheduler.ErrConflict)
		}
		seen[d.ID] = true
	}
	s.deviceTxns.Add(1)
	for i, d := range recs {
		if err := s.saveDeviceLocked(app, d, values[i]); err != nil {
			return i, err // cannot be: checked above
		}
	}
	return len(recs), nil
}

func (s *Store) saveDeviceLocked(app string, d *scheduler.DeviceRecord, data []byte) error {
	m := s.devices[app]
	if m == nil {
		m = map[string]kvEntry{}
		s.devices[app] = m
	}
	idx, err := s.cas(m, d.ID, data, d.Index, "device "+d.Name+" of "+app)
	if err != nil {
		return err
	}
	if !s.KeepRecords {
		m[d.ID] = kvEntry{index: idx}
	}
	s.deviceWrites.Add(1)
	d.Index = idx
	return nil
}

// Controls implements scheduler.Store: with waitIndex > 0 it blocks until
// the requests change after waitIndex, wait (simulated) or ctx ends.
func (s *Store) Controls(ctx context.Context, app string, waitIndex uint64, wait time.Duration) (scheduler.Controls, uint64, error) {
	s.polls.Add(1)
	var timeout <-chan struct{}
	var stop func()
	for {
		s.mu.Lock()
		e, ok := s.controls[app]
		idx := max(e.index, 1)
		if waitIndex == 0 || idx > waitIndex {
			s.mu.Unlock()
			if stop != nil {
				stop()
			}
			var ctl scheduler.Controls
			if ok && e.value != nil {
				if err := json.Unmarshal(e.value, &ctl); err != nil {
					return ctl, 0, fmt.Errorf("decoding the requests of %s: %w", app, err)
				}
			}
			return ctl, idx, nil
		}
		changed := s.changed
		s.mu.Unlock()
		if timeout == nil {
			timeout, stop = s.clock.Timer(wait)
		}
		select {
		case <-ctx.Done():
			stop()
			return scheduler.Controls{}, waitIndex, ctx.Err()
		case <-timeout:
			return s.Controls(ctx, app, 0, 0)
		case <-changed:
		}
	}
}

// SetControls stores operators' requests (an approval, a pause, a
// rollback) and wakes the blocking queries on them.
func (s *Store) SetControls(app string, ctl scheduler.Controls) error {
	data, err := json.Marshal(ctl)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.controls[app] = kvEntry{value: data, index: s.index}
	close(s.changed)
	s.changed = make(chan struct{})
	return nil
}

// ClearControls implements scheduler.Store.
func (s *Store) ClearControls(ctx context.Context, app string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.SetControls(app, scheduler.Controls{})
}

// ActiveSlot implements scheduler.Store.
func (s *Store) ActiveSlot(ctx context.Context, app string) (*scheduler.ActiveSlot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.active[app]
	if !ok {
		return nil, nil
	}
	a := new(scheduler.ActiveSlot)
	if err := json.Unmarshal(e.value, a); err != nil {
		return nil, fmt.Errorf("decoding the active slot of %s: %w", app, err)
	}
	a.Index = e.index
	return a, nil
}

// SetActiveSlot implements scheduler.Store (check-and-set on a.Index).
func (s *Store) SetActiveSlot(ctx context.Context, app string, a *scheduler.ActiveSlot) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.cas(s.active, app, data, a.Index, "the active slot of "+app)
	if err != nil {
		return err
	}
	a.Index = idx
	return nil
}

// Archive implements scheduler.Store: the run is encoded as it would be
// kept, and counted.
func (s *Store) Archive(ctx context.Context, r *scheduler.Rollout) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.index++
	s.history++
	s.bytesWritten.Add(int64(len(data)))
	return nil
}

// StoreStats are the writes a run made. DeviceTxns counts the device
// write requests (a SaveDevices batch is one, as one Consul transaction).
type StoreStats struct {
	RolloutWrites, DeviceWrites, DeviceTxns, BytesWritten, Conflicts, ControlPolls int64
}

// Stats returns the store's counters.
func (s *Store) Stats() StoreStats {
	return StoreStats{
		RolloutWrites: s.rolloutWrites.Load(), DeviceWrites: s.deviceWrites.Load(), DeviceTxns: s.deviceTxns.Load(),
		BytesWritten: s.bytesWritten.Load(), Conflicts: s.conflicts.Load(), ControlPolls: s.polls.Load(),
	}
}
