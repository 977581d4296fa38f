package simfleet

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Fleet is an in-memory stand-in for the Nomad and Consul servers of a
// fleet: every device's slot metadata (Nomad dynamic node metadata), the
// allocations of the two slot jobs on it and the Consul check of each one.
// Every change takes the next index (like Raft's), and readers follow the
// changes with blocking queries (Changes): a query returns at once when
// something changed after its index, else blocks until a change, its wait
// time (on the simulated clock) or its context ends.
//
// Fleet implements scheduler.Cluster. A device's switch completes after
// simulated delays: the new slot's allocation is pending, running after
// StartDelay, and its check passes after CheckDelay, or turns critical
// when the device is one that fails the release.
type Fleet struct {
	clock *Clock
	cfg   FleetConfig

	mu      sync.Mutex
	devices []device
	byID    map[string]int32
	index   uint64
	// changed is closed (and replaced) on every change: it wakes the
	// blocking queries.
	changed chan struct{}
	// log holds the devices changed since the oldest index a reader
	// still needs, in index order.
	log  []logEntry
	jobs [2]slotJob

	switches     atomic.Int64
	switchedOnce atomic.Int64 // devices switched to a version that may fail
	openPolls    atomic.Int64
	maxPolls     atomic.Int64
	polls        atomic.Int64
}

// FleetConfig shapes the simulated devices.
type FleetConfig struct {
	// SwitchLatency is how long one switch takes on its device (setting
	// the metadata, the server seeing it, stopping the old allocation);
	// with Parallel switches in flight, each advances the clock by
	// SwitchLatency/Parallel.
	SwitchLatency time.Duration
	Parallel      int
	// StartDelay: the new allocation runs this long after the switch;
	// CheckDelay: its check has run (passing or critical) by then.
	StartDelay time.Duration
	CheckDelay time.Duration
	// FailVersion is the release that fails on the devices FailDevice
	// names (its check turns critical); FailAfter: only devices switched
	// after that many switches to FailVersion fail (a wave meeting a bad
	// hardware batch).
	FailVersion string
	FailDevice  func(i int) bool
	FailAfter   int64
}

// slotJob is one slot's job: registered with a version or not.
type slotJob struct {
	registered bool
	version    string
}

// device is one simulated device. Slots are indexed 0 = blue, 1 = green.
type device struct {
	ref     scheduler.DeviceRef
	online  bool
	meta    string // the slot metadata value
	failing bool   // fails FailVersion (once switched after FailAfter)
	slots   [2]allocState
}

// allocState is one slot job's allocation on a device and its check.
type allocState struct {
	id      string
	status  string // "" (none), pending, running, complete
	version string
	check   string // critical (not run yet or failing), passing
	output  string
	gen     uint32 // bumped on every placement or stop: stale events are dropped
}

type logEntry struct {
	index uint64
	dev   int32
}

// DeviceView is what a blocking query returns about one device.
type DeviceView struct {
	Dev    int32
	Online bool
	Meta   string
	Slots  [2]allocState
	Ref    *scheduler.DeviceRef
}

// NewFleet makes devices on the active slot (blue) running version, their
// checks passing, with the given offline devices.
func NewFleet(clock *Clock, cfg FleetConfig, refs []scheduler.DeviceRef, version string, offline func(i int) bool) *Fleet {
	if cfg.Parallel <= 0 {
		cfg.Parallel = 1
	}
	f := &Fleet{
		clock:   clock,
		cfg:     cfg,
		devices: make([]device, len(refs)),
		byID:    make(map[string]int32, len(refs)),
		index:   1,
		changed: make(chan struct{}),
	}
	f.jobs[0] = slotJob{registered: true, version: version}
	for i, ref := range refs {
		d := &f.devices[i]
		d.ref = ref
		d.online = offline == nil || !offline(i)
		d.meta = scheduler.SlotBlue
		d.failing = cfg.FailDevice != nil && cfg.FailDevice(i)
		d.slots[0] = allocState{id: ref.ID[:min(8, len(ref.ID))] + "-blue", status: "running", version: version, check: "passing", output: "HTTP GET /health: 200 OK"}
		f.byID[ref.ID] = int32(i)
	}
	return f
}

func slotIndex(colour string) int {
	if colour == scheduler.SlotGreen {
		return 1
	}
	return 0
}

func slotColour(i int) string {
	if i == 1 {
		return scheduler.SlotGreen
	}
	return scheduler.SlotBlue
}

// holds reports which slots a metadata value names.
func holds(meta string) [2]bool {
	return [2]bool{scheduler.SlotHolds(meta, scheduler.SlotBlue), scheduler.SlotHolds(meta, scheduler.SlotGreen)}
}

// touch records a change of device i (under f.mu).
func (f *Fleet) touch(i int32) {
	f.index++
	f.log = append(f.log, logEntry{index: f.index, dev: i})
	close(f.changed)
	f.changed = make(chan struct{})
}

// Index is the current index.
func (f *Fleet) Index() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index
}

// Changes is a blocking query for the devices that changed after
// waitIndex: it returns their current views and the index they are at. It
// returns at once when something changed (or waitIndex is 0: every
// device), and otherwise blocks until a change, wait (simulated) or ctx
// ends. The log before waitIndex is dropped: one reader follows it.
func (f *Fleet) Changes(ctx context.Context, waitIndex uint64, wait time.Duration) ([]DeviceView, uint64, error) {
	f.polls.Add(1)
	n := f.openPolls.Add(1)
	defer f.openPolls.Add(-1)
	for {
		m := f.maxPolls.Load()
		if n <= m || f.maxPolls.CompareAndSwap(m, n) {
			break
		}
	}
	var timeout <-chan struct{}
	var stop func()
	for {
		f.mu.Lock()
		if waitIndex == 0 {
			out := make([]DeviceView, len(f.devices))
			for i := range f.devices {
				out[i] = f.view(int32(i))
			}
			f.log = f.log[:0]
			idx := f.index
			f.mu.Unlock()
			return out, idx, nil
		}
		if f.index > waitIndex {
			// Drop what the reader has seen, then collect the rest.
			cut := 0
			for cut < len(f.log) && f.log[cut].index <= waitIndex {
				cut++
			}
			f.log = append(f.log[:0], f.log[cut:]...)
			seen := make(map[int32]struct{}, len(f.log))
			out := make([]DeviceView, 0, len(f.log))
			for _, e := range f.log {
				if _, dup := seen[e.dev]; dup {
					continue
				}
				seen[e.dev] = struct{}{}
				out = append(out, f.view(e.dev))
			}
			idx := f.index
			f.mu.Unlock()
			if stop != nil {
				stop()
			}
			return out, idx, nil
		}
		changed := f.changed
		f.mu.Unlock()
		if timeout == nil {
			timeout, stop = f.clock.Timer(wait)
		}
		select {
		case <-ctx.Done():
			stop()
			return nil, waitIndex, ctx.Err()
		case <-timeout:
			return nil, waitIndex, nil
		case <-changed:
		}
	}
}

func (f *Fleet) view(i int32) DeviceView {
	d := &f.devices[i]
	return DeviceView{Dev: i, Online: d.online, Meta: d.meta, Slots: d.slots, Ref: &d.ref}
}

// PrepareCandidate implements scheduler.Cluster: it registers the
// candidate slot's job, which Nomad places at once on every device whose
// metadata names the slot (not on fenced devices).
func (f *Fleet) PrepareCandidate(ctx context.Context, r *scheduler.Rollout) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := slotIndex(r.Candidate)
	fenced := make(map[string]bool, len(r.Fenced))
	for _, d := range r.Fenced {
		fenced[d.ID] = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[s] = slotJob{registered: true, version: r.Version}
	for i := range f.devices {
		d := &f.devices[i]
		if holds(d.meta)[s] && !fenced[d.ref.ID] && d.slots[s].status != "running" {
			f.place(int32(i), s)
		}
	}
	return nil
}

// RetireCandidate implements scheduler.Cluster: the candidate's job stops
// everywhere.
func (f *Fleet) RetireCandidate(ctx context.Context, r *scheduler.Rollout) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := slotIndex(r.Candidate)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.jobs[s].registered = false
	for i := range f.devices {
		if st := f.devices[i].slots[s].status; st != "" && st != "complete" {
			f.stopAlloc(int32(i), s)
		}
	}
	return nil
}

// SwitchDevice implements scheduler.Cluster: it sets the device's slot
// metadata, stops the allocations of slots the new value no longer names
// and places those it newly names (when their job is registered). It takes
// the device's share of the switch latency.
func (f *Fleet) SwitchDevice(ctx context.Context, dev scheduler.DeviceRef, from, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.clock.Advance(f.cfg.SwitchLatency / time.Duration(f.cfg.Parallel))
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.byID[dev.ID]
	if !ok {
		return fmt.Errorf("setting slot metadata on %s: Nomad knows no node %s", dev.Name, dev.ID)
	}
	d := &f.devices[i]
	if !d.online {
		return fmt.Errorf("setting slot metadata on %s: node is down: %w", dev.Name, scheduler.ErrDeviceOffline)
	}
	f.switches.Add(1)
	before, after := holds(d.meta), holds(to)
	d.meta = to
	f.touch(i)
	for s := range 2 {
		switch {
		case before[s] && !after[s]:
			f.stopAlloc(i, s)
		case after[s] && f.jobs[s].registered && (!before[s] || d.slots[s].status == "" || d.slots[s].status == "complete"):
			f.place(i, s)
		}
	}
	return nil
}

// place starts slot s's allocation on device i (under f.mu): pending now,
// running after StartDelay, its check run after CheckDelay.
func (f *Fleet) place(i int32, s int) {
	d := &f.devices[i]
	a := &d.slots[s]
	a.gen++
	gen := a.gen
	a.id = d.ref.ID[:min(8, len(d.ref.ID))] + "-" + slotColour(s) + "-" + strconv.Itoa(int(gen))
	a.status, a.version = "pending", f.jobs[s].version
	a.check, a.output = "critical", "" // registered, not run yet
	f.touch(i)
	fails := false
	if a.version == f.cfg.FailVersion {
		n := f.switchedOnce.Add(1)
		fails = d.failing && n > f.cfg.FailAfter
	}
	now := f.clock.Now()
	f.clock.At(now.Add(f.cfg.StartDelay), func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if a := &f.devices[i].slots[s]; a.gen == gen {
			a.status = "running"
			f.touch(i)
		}
	})
	f.clock.At(now.Add(f.cfg.CheckDelay), func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if a := &f.devices[i].slots[s]; a.gen == gen {
			if fails {
				a.check, a.output = "critical", "HTTP GET /health: 500 Internal Server Error Output: critical: inference failed"
			} else {
				a.check, a.output = "passing", "HTTP GET /health: 200 OK"
			}
			f.touch(i)
		}
	})
}

// stopAlloc stops slot s's allocation on device i (under f.mu).
func (f *Fleet) stopAlloc(i int32, s int) {
	a := &f.devices[i].slots[s]
	a.gen++
	a.status, a.check, a.output = "complete", "", ""
	f.touch(i)
}

// SetOnline brings a device up or down.
func (f *Fleet) SetOnline(id string, online bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.byID[id]; ok && f.devices[i].online != online {
		f.devices[i].online = online
		f.touch(i)
	}
}

// Meta returns a device's slot metadata.
func (f *Fleet) Meta(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i, ok := f.byID[id]; ok {
		return f.devices[i].meta
	}
	return ""
}

// Running returns the versions of the allocations running on a device.
func (f *Fleet) Running(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.byID[id]
	if !ok {
		return nil
	}
	var out []string
	for s := range 2 {
		if a := f.devices[i].slots[s]; a.status == "running" {
			out = append(out, slotColour(s)+"@"+a.version)
		}
	}
	return out
}

// FleetStats are the counters of a fleet.
type FleetStats struct {
	Switches int64
	// Polls is the number of blocking queries made; MaxOpenPolls the most
	// open at once.
	Polls        int64
	MaxOpenPolls int64
}

// Stats returns the fleet's counters.
func (f *Fleet) Stats() FleetStats {
	return FleetStats{Switches: f.switches.Load(), Polls: f.polls.Load(), MaxOpenPolls: f.maxPolls.Load()}
}

// describe is a device's state in one line (test failures).
func (f *Fleet) describe(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := f.byID[id]
	if !ok {
		return "unknown"
	}
	d := f.devices[i]
	var b strings.Builder
	fmt.Fprintf(&b, "meta %q online %v", d.meta, d.online)
	for s := range 2 {
		a := d.slots[s]
		fmt.Fprintf(&b, "; %s: %s %s check %s", slotColour(s), a.status, a.version, a.check)
	}
	return b.String()
}
