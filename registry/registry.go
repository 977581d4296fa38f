// Package registry keeps the device registry: every device of the fleet as
// Nomad and Consul see it, persisted in Consul KV so that every fleetplan
// process and the operator share one picture.
//
// Its keys (store.Layout: <prefix>registry/<node-id>, one per device, and
// the event log <prefix>registry-events/) are read and written through the
// store; the event log keeps at most Options.MaxEventChunks chunks.
//
// A sync observes the cluster (Observe), loads the registry (one List),
// computes the next registry with scheduler.DiffRegistry and writes the
// entries that changed with check-and-set, in transactions of up to 64
// writes. Watch keeps it in step with blocking queries.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// Event kinds of operator actions, besides the scheduler.Event* kinds of a
// sync.
const (
	EventResolved    = "resolved"
	EventQuarantined = "quarantined"
	EventReleased    = "released"
)

// ActorSync is the actor of the events a sync records.
const ActorSync = "sync"

// ErrUnknownDevice: no registry device has that name or ID.
var ErrUnknownDevice = errors.New("no such device in the registry")

// Event is one entry of the registry's event log.
type Event struct {
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
	scheduler.RegistryEvent
}

// Options configure a Registry. The zero value is usable.
type Options struct {
	// Prefix is the KV root, "fleetplan/" by default. Tests use their own.
	Prefix string
	Logger hclog.Logger
	Now    func() time.Time
	// Actor names who quarantines through the scheduler.Registry interface
	// (default "fleetplan").
	Actor string
	// HeartbeatResolution: a device whose only change is a newer heartbeat
	// is written at most this often (default 5m), so that a sync of a
	// healthy fleet writes nothing.
	HeartbeatResolution time.Duration
	// MaxEventChunks bounds the event log (default 1000 keys).
	MaxEventChunks int
	// DetailWorkers bounds the concurrent Nomad node detail reads (default 8).
	DetailWorkers int
	// Watch tuning, see Watch.
	MinSyncInterval time.Duration // default 1s
	ResyncInterval  time.Duration // default 1m
	MaxBackoff      time.Duration // default 1m
	// OnSync, if set, is called by Watch after every sync.
	OnSync func(events []Event, err error)
}

// Registry is the device registry. It implements scheduler.Registry.
type Registry struct {
	nomad  *nomadapi.Client
	consul *consulapi.Client
	store  *store.Consul

	logger        hclog.Logger
	now           func() time.Time
	actor         string
	hbResolution  time.Duration
	maxEventKeys  int
	detailWorkers int
	minInterval   time.Duration
	resync        time.Duration
	maxBackoff    time.Duration
	onSync        func([]Event, error)

	syncMu  sync.Mutex // one sync at a time in this process
	decoded snapshot   // the registry as the last sync left it (under syncMu; see loadForSync)

	cacheMu sync.Mutex
	details map[string]nodeDetail // Nomad node ID -> details
	// sharedApps holds the Apps maps the last Observe handed out, by
	// content (see shareApps).
	sharedApps    map[string]map[string]scheduler.AppSlot
	detailFetches atomic.Int64 // node detail reads, for tests
}

var _ scheduler.Registry = (*Registry)(nil)

// New returns the registry on the Nomad and Consul clients.
func New(n *nomadapi.Client, c *consulapi.Client, o Options) *Registry {
	r := &Registry{
		nomad:         n,
		consul:        c,
		logger:        o.Logger,
		now:           o.Now,
		actor:         o.Actor,
		hbResolution:  o.HeartbeatResolution,
		maxEventKeys:  o.MaxEventChunks,
		detailWorkers: o.DetailWorkers,
		minInterval:   o.MinSyncInterval,
		resync:        o.ResyncInterval,
		maxBackoff:    o.MaxBackoff,
		onSync:        o.OnSync,
		details:       map[string]nodeDetail{},
	}
	if r.logger == nil {
		r.logger = hclog.NewNullLogger()
	}
	r.logger = r.logger.Named("registry")
	if r.now == nil {
		r.now = time.Now
	}
	if r.actor == "" {
		r.actor = "fleetplan"
	}
	if r.hbResolution == 0 {
		r.hbResolution = 5 * time.Minute
	}
	if r.maxEventKeys <= 0 {
		r.maxEventKeys = 1000
	}
	if r.detailWorkers <= 0 {
		r.detailWorkers = 8
	}
	if r.minInterval == 0 {
		r.minInterval = time.Second
	}
	if r.resync == 0 {
		r.resync = time.Minute
	}
	if r.maxBackoff == 0 {
		r.maxBackoff = time.Minute
	}
	r.store = store.New(c, store.Options{Prefix: o.Prefix, Logger: o.Logger, Now: r.now})
	return r
}

// devicesPrefix is the KV folder of the registry entries.
func (r *Registry) devicesPrefix() string { return r.store.Layout().Registry() }

// List returns every registry device, sorted by name, as stored (no sync).
func (r *Registry) List(ctx context.Context) ([]scheduler.Device, error) {
	s, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	return sortedDevices(s.devices), nil
}

func sortedDevices(m map[string]scheduler.Device) []scheduler.Device {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b scheduler.Device) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Get returns one device by node ID, unique ID prefix, registry key or node
// name. An unknown device yields an error wrapping ErrUnknownDevice.
func (r *Registry) Get(ctx context.Context, nameOrID string) (*scheduler.Device, error) {
	d, _, err := r.find(ctx, nameOrID)
	return d, err
}

// find looks a device up; it returns the device and its modify index.
func (r *Registry) find(ctx context.Context, nameOrID string) (*scheduler.Device, uint64, error) {
	if nameOrID == "" {
		return nil, 0, fmt.Errorf("no device named: %w", ErrUnknownDevice)
	}
	// A full key costs one read.
	if !strings.Contains(nameOrID, "/") {
		pair, err := r.store.RegistryEntry(ctx, nameOrID)
		if err != nil {
			return nil, 0, err
		}
		if pair != nil {
			var d scheduler.Device
			if err := json.Unmarshal(pair.Value, &d); err != nil {
				return nil, 0, fmt.Errorf("decoding %s: %w", pair.Key, err)
			}
			d.ID = nameOrID
			return &d, pair.ModifyIndex, nil
		}
	}
	s, err := r.load(ctx)
	if err != nil {
		return nil, 0, err
	}
	var byName, byPrefix []string
	for k, d := range s.devices {
		switch {
		case d.Name == nameOrID:
			byName = append(byName, k)
		case len(nameOrID) >= 4 && strings.HasPrefix(k, nameOrID):
			byPrefix = append(byPrefix, k)
		}
	}
	pick := byName
	if len(pick) == 0 {
		pick = byPrefix
	}
	switch len(pick) {
	case 0:
		return nil, 0, fmt.Errorf("%q: %w", nameOrID, ErrUnknownDevice)
	case 1:
		d := s.devices[pick[0]]
		return &d, s.index[pick[0]], nil
	}
	slices.Sort(pick)
	return nil, 0, fmt.Errorf("%q is ambiguous: it names the registry entries %s; use a node ID", nameOrID, strings.Join(pick, ", "))
}

// Sync observes the cluster, compares it with the registry and writes what
// changed; it returns the events it recorded. A check-and-set lost to
// another fleetplan process is retried with a fresh read of the registry.
func (r *Registry) Sync(ctx context.Context) ([]Event, error) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	obs, err := r.Observe(ctx)
	if err != nil {
		return nil, err
	}
	var all []Event
	for attempt := 1; ; attempt++ {
		s, err := r.loadForSync(ctx)
		if err != nil {
			return all, err
		}
		now := r.now()
		plan := r.planSync(s, obs, now)
		committed, werr := r.write(ctx, plan.ops)
		s.forgetUncommitted(plan.ops, committed)
		events := plan.eventsFor(committed, now)
		if len(events) > 0 {
			if err := r.appendEvents(ctx, events, now); err != nil {
				return append(all, events...), err
			}
			all = append(all, events...)
		}
		if werr == nil {
			r.logger.Debug("synced", "devices", len(plan.next), "writes", len(plan.ops), "events", len(events))
			return all, nil
		}
		if !errors.Is(werr, scheduler.ErrConflict) || attempt == 3 {
			return all, werr
		}
		r.logger.Debug("registry changed underneath the sync; again", "error", werr)
	}
}

// syncPlan is the non-network part of a sync: the next registry, the
// writes that take KV there and the events, by registry key.
type syncPlan struct {
	next   map[string]scheduler.Device
	ops    []store.RegistryWrite
	events []scheduler.RegistryEvent
}

// planSync diffs the registry with an observation: s.devices (the decode
// cache) becomes the next registry, in place, and s.index drops the keys
// it no longer has; Sync drops the entries whose writes do not commit
// (forgetUncommitted), so that the cache stays what KV holds at the
// indices it records. A device whose only change is a heartbeat younger
// than the resolution keeps its stored one and is not written.
func (r *Registry) planSync(s snapshot, obs scheduler.Observed, now time.Time) syncPlan {
	var ops []store.RegistryWrite
	hook := func(k string, old scheduler.Device, known bool, d scheduler.Device) scheduler.Device {
		if known {
			if d.LastHeartbeat.After(old.LastHeartbeat) && d.LastHeartbeat.Sub(old.LastHeartbeat) < r.hbResolution {
				d.LastHeartbeat = old.LastHeartbeat
			}
			if equalDevice(old, d) {
				// Stored with the observation's maps when they are
				// equal but not the same: the next sync compares them
				// by identity when the node did not change.
				return d
			}
		}
		if data, err := json.Marshal(d); err == nil { // a Device always encodes
			ops = append(ops, store.RegistryWrite{ID: k, Value: data, Index: s.index[k]})
		}
		return d
	}
	next, events, removed, once := diffWith(s.devices, obs, now, hook)
	p := syncPlan{next: next, events: events, ops: ops}
	for _, k := range removed {
		p.ops = append(p.ops, store.RegistryWrite{ID: k, Index: s.index[k]})
		delete(s.index, k)
	}
	slices.SortStableFunc(p.ops, func(a, b store.RegistryWrite) int { return strings.Compare(a.ID, b.ID) })
	if !once {
		// A key was settled twice: its last write is the entry next
		// holds.
		p.ops = lastWritePerKey(p.ops)
	}
	return p
}

// lastWritePerKey keeps the last of the writes of each key (ops sorted by
// key, stably).
func lastWritePerKey(ops []store.RegistryWrite) []store.RegistryWrite {
	out := ops[:0]
	for i, op := range ops {
		if i+1 < len(ops) && ops[i+1].ID == op.ID {
			continue
		}
		out = append(out, op)
	}
	return out
}

// forgetUncommitted drops from the snapshot (the decode cache) the entries
// of the writes that did not commit: planSync stored their next entry at
// the old index, which KV does not hold; the next sync decodes them again.
func (s snapshot) forgetUncommitted(ops []store.RegistryWrite, committed map[string]bool) {
	for _, op := range ops {
		if !committed[op.ID] {
			delete(s.devices, op.ID)
			delete(s.index, op.ID)
		}
	}
}

// planSyncFrom is planSync from a next registry already computed.
func (r *Registry) planSyncFrom(s snapshot, next map[string]scheduler.Device, events []scheduler.RegistryEvent) syncPlan {
	p := syncPlan{next: next, events: events}
	for k, d := range next {
		old, known := s.devices[k]
		if known {
			if d.LastHeartbeat.After(old.LastHeartbeat) && d.LastHeartbeat.Sub(old.LastHeartbeat) < r.hbResolution {
				d.LastHeartbeat = old.LastHeartbeat
				next[k] = d
			}
			if equalDevice(old, d) {
				continue
			}
		}
		data, err := json.Marshal(d)
		if err != nil {
			continue // a Device always encodes
		}
		p.ops = append(p.ops, store.RegistryWrite{ID: k, Value: data, Index: s.index[k]})
	}
	for k := range s.devices {
		if _, ok := next[k]; !ok {
			p.ops = append(p.ops, store.RegistryWrite{ID: k, Index: s.index[k]})
		}
	}
	slices.SortFunc(p.ops, func(a, b store.RegistryWrite) int { return strings.Compare(a.ID, b.ID) })
	return p
}

// eventsFor returns the events of the devices whose writes committed (and of
// devices that needed none).
func (p syncPlan) eventsFor(committed map[string]bool, now time.Time) []Event {
	pending := make(map[string]bool, len(p.ops))
	for _, op := range p.ops {
		if !committed[op.ID] {
			pending[op.ID] = true
		}
	}
	var out []Event
	for _, e := range p.events {
		if pending[e.Device] {
			continue
		}
		out = append(out, Event{Time: now.UTC(), Actor: ActorSync, RegistryEvent: e})
	}
	// By device name for people; the diff's order (by key) stays within one.
	slices.SortStableFunc(out, func(a, b Event) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// write applies the writes through the store and returns the keys whose
// writes committed. A lost check-and-set stops it with an error wrapping
// scheduler.ErrConflict.
func (r *Registry) write(ctx context.Context, ops []store.RegistryWrite) (map[string]bool, error) {
	n, err := r.store.WriteRegistry(ctx, ops)
	committed := make(map[string]bool, n)
	for _, op := range ops[:n] {
		committed[op.ID] = true
	}
	return committed, err
}

// equalDevice compares two registry entries field by field (a test checks
// that it covers every field of scheduler.Device).
func equalDevice(a, b scheduler.Device) bool {
	return a.ID == b.ID && a.Name == b.Name && a.Class == b.Class && a.Datacenter == b.Datacenter &&
		a.NomadStatus == b.NomadStatus && a.Eligibility == b.Eligibility && a.ConsulStatus == b.ConsulStatus &&
		a.Address == b.Address && a.Capabilities == b.Capabilities &&
		a.LastHeartbeat.Equal(b.LastHeartbeat) && a.Status == b.Status && a.Reason == b.Reason && a.Resolved == b.Resolved &&
		(sameMap(a.Meta, b.Meta) || maps.Equal(a.Meta, b.Meta)) && (sameMap(a.Apps, b.Apps) || maps.Equal(a.Apps, b.Apps))
}

// sameMap reports whether a and b are the same map (then they are equal
// without comparing their entries).
func sameMap[K comparable, V any](a, b map[K]V) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// update applies change to one device with check-and-set, retrying once
// when another writer got there first, and records the event change returns
// (none when it returns nil).
func (r *Registry) update(ctx context.Context, nameOrID string, change func(d *scheduler.Device) (*Event, error)) (*scheduler.Device, error) {
	for attempt := 1; ; attempt++ {
		d, index, err := r.find(ctx, nameOrID)
		if err != nil {
			return nil, err
		}
		ev, err := change(d)
		if err != nil || ev == nil {
			return d, err
		}
		data, err := json.Marshal(d)
		if err != nil {
			return nil, err
		}
		_, err = r.store.WriteRegistry(ctx, []store.RegistryWrite{{ID: d.ID, Value: data, Index: index}})
		if errors.Is(err, scheduler.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		ev.Device, ev.Name = d.ID, d.Name
		if ev.Time.IsZero() {
			ev.Time = r.now().UTC()
		}
		return d, r.appendEvents(ctx, []Event{*ev}, r.now())
	}
}

// Resolve accepts a device's discrepancy: deploying to it is allowed again
// until Nomad and Consul agree (then the mark is cleared by a sync).
func (r *Registry) Resolve(ctx context.Context, nameOrID, actor string) (*scheduler.Device, error) {
	if actor == "" {
		actor = store.DefaultActor()
	}
	return r.update(ctx, nameOrID, func(d *scheduler.Device) (*Event, error) {
		if d.Status != scheduler.StatusDiscrepancy {
			return nil, fmt.Errorf("device %s (%s) is %s: there is no discrepancy to resolve", d.Name, d.ID, d.Status)
		}
		if d.Resolved {
			return nil, nil
		}
		d.Resolved = true
		return &Event{Actor: actor, RegistryEvent: scheduler.RegistryEvent{Kind: EventResolved, Detail: "discrepancy accepted: " + d.Reason}}, nil
	})
}

// Quarantine marks a device quarantined (scheduler.Registry); the actor is
// Options.Actor.
func (r *Registry) Quarantine(ctx context.Context, deviceID, reason string) error {
	_, err := r.QuarantineBy(ctx, deviceID, reason, r.actor)
	return err
}

// QuarantineBy marks a device quarantined: it is excluded from rollouts
// until released. Quarantining a quarantined device changes nothing.
func (r *Registry) QuarantineBy(ctx context.Context, nameOrID, reason, actor string) (*scheduler.Device, error) {
	if reason == "" {
		return nil, errors.New("a quarantine needs a reason")
	}
	if actor == "" {
		actor = store.DefaultActor()
	}
	return r.update(ctx, nameOrID, func(d *scheduler.Device) (*Event, error) {
		if d.Status == scheduler.StatusQuarantined {
			return nil, nil
		}
		was := d.Status
		d.Status, d.Reason, d.Resolved = scheduler.StatusQuarantined, reason, false
		return &Event{Actor: actor, RegistryEvent: scheduler.RegistryEvent{Kind: EventQuarantined, Detail: reason + " (was " + string(was) + ")"}}, nil
	})
}

// Release lifts a device's quarantine and syncs, so that its status is what
// Nomad and Consul say again.
func (r *Registry) Release(ctx context.Context, nameOrID, actor string) (*scheduler.Device, error) {
	if actor == "" {
		actor = store.DefaultActor()
	}
	d, err := r.update(ctx, nameOrID, func(d *scheduler.Device) (*Event, error) {
		if d.Status != scheduler.StatusQuarantined {
			return nil, fmt.Errorf("device %s (%s) is %s, not quarantined", d.Name, d.ID, d.Status)
		}
		detail := "quarantine lifted (was: " + d.Reason + ")"
		// Provisional; the sync below judges the device again.
		d.Status, d.Reason = scheduler.StatusOK, ""
		return &Event{Actor: actor, RegistryEvent: scheduler.RegistryEvent{Kind: EventReleased, Detail: detail}}, nil
	})
	if err != nil {
		return nil, err
	}
	if _, err := r.Sync(ctx); err != nil {
		return d, fmt.Errorf("released %s, but the sync that checks it again failed: %w", d.Name, err)
	}
	return r.Get(ctx, d.ID)
}

// Devices returns the registry devices of a policy's fleet (scheduler.Registry):
// the nodes Nomad's own filter engine selects with the fleet selector (so the
// selector means exactly what it means to Nomad), in the fleet's
// datacenters (globs allowed), including offline ones. It syncs first.
func (r *Registry) Devices(ctx context.Context, p *scheduler.Policy) ([]scheduler.Device, error) {
	if _, err := r.Sync(ctx); err != nil {
		return nil, err
	}
	q := &nomadapi.QueryOptions{Filter: p.Fleet.Selector}
	nodes, _, err := r.nomad.Nodes().List(q.WithContext(ctx))
	if err != nil {
		var ure nomadapi.UnexpectedResponseError
		if errors.As(err, &ure) && ure.StatusCode() == 400 {
			return nil, fmt.Errorf("the fleet selector %q was rejected by Nomad: %s", p.Fleet.Selector, strings.TrimSpace(ure.Body()))
		}
		return nil, fmt.Errorf("selecting the fleet's nodes in Nomad at %s: %w", r.nomad.Address(), err)
	}
	s, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]scheduler.Device, 0, len(nodes))
	for _, n := range nodes {
		if !inDatacenters(n.Datacenter, p.Fleet.Datacenters) {
			continue
		}
		if d, ok := s.devices[n.ID]; ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b scheduler.Device) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

func inDatacenters(dc string, patterns []string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, dc); ok || p == dc {
			return true
		}
	}
	return false
}
