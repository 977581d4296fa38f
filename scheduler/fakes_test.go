package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock advances by itself: After(d) moves time forward by d and fires
// at once, so state machines run without sleeping and deterministically.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	now := c.now
	c.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// fakeCluster keeps each device's slot metadata, like Nomad's node meta.
type fakeCluster struct {
	mu       sync.Mutex
	slots    map[string]string // device ID -> slot value
	offline  map[string]bool
	failOnce map[string]error // device ID -> error returned by the next switch to the candidate
	// controlPlane makes switches of a device fail for the control plane
	// (a Nomad 500) that many times; -1: until it is cleared.
	controlPlane map[string]int
	switches     int
	prepared     []string
	// ungated are the devices the candidate job was placed on when it was
	// registered (stale metadata naming its colour); fenced the devices it
	// was kept off; retired the candidate jobs stopped after a rollback.
	ungated []string
	fenced  []DeviceRef
	retired []string
	// onSwitch is called after each successful switch (to kill a
	// controller mid-wave in tests); beforeSwitch before each switch.
	onSwitch     func(n int)
	beforeSwitch func(id string)
}

func newFakeCluster() *fakeCluster {
	return &fakeCluster{slots: map[string]string{}, offline: map[string]bool{}, failOnce: map[string]error{}, controlPlane: map[string]int{}}
}

func (f *fakeCluster) PrepareCandidate(ctx context.Context, r *Rollout) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.prepared = append(f.prepared, r.App+"-"+r.Candidate+"@"+r.Version)
	// Nomad places the registered job at once on every node whose slot
	// metadata names its colour, unless the job is fenced off the node.
	fenced := map[string]bool{}
	for _, d := range r.Fenced {
		fenced[d.ID] = true
	}
	for id, v := range f.slots {
		if SlotHolds(v, r.Candidate) && !fenced[id] {
			f.ungated = append(f.ungated, id)
		}
	}
	f.fenced = append(f.fenced, r.Fenced...)
	return nil
}

func (f *fakeCluster) RetireCandidate(ctx context.Context, r *Rollout) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retired = append(f.retired, r.App+"-"+r.Candidate)
	return nil
}

func (f *fakeCluster) SwitchDevice(ctx context.Context, dev DeviceRef, from, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.beforeSwitch != nil {
		f.beforeSwitch(dev.ID)
	}
	f.mu.Lock()
	if f.offline[dev.ID] {
		f.mu.Unlock()
		return fmt.Errorf("setting slot metadata on %s: %w", dev.Name, ErrDeviceOffline)
	}
	if n := f.controlPlane[dev.ID]; n != 0 {
		if n > 0 {
			f.controlPlane[dev.ID] = n - 1
		}
		f.mu.Unlock()
		return fmt.Errorf("setting slot metadata on %s: Unexpected response code: 500 (No cluster leader): %w", dev.Name, ErrControlPlane)
	}
	if err, ok := f.failOnce[dev.ID]; ok && to != "" && f.slots[dev.ID] == from {
		delete(f.failOnce, dev.ID)
		// Fails partway: the metadata was set, the old allocation not
		// stopped.
		f.slots[dev.ID] = to
		f.mu.Unlock()
		return err
	}
	f.slots[dev.ID] = to
	f.switches++
	n := f.switches
	cb := f.onSwitch
	f.mu.Unlock()
	if cb != nil {
		cb(n)
	}
	return nil
}

func (f *fakeCluster) slot(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.slots[id]
}

// fakeHealth reports health from the fake cluster's slots: a device on the
// candidate slot is healthy unless its class (or ID) is listed as broken.
type fakeHealth struct {
	// policy is the rollout's: faults apply to its release only, unless
	// oldBroken says the old version is broken too.
	policy    *Policy
	oldBroken bool
	cluster   *fakeCluster
	mu        sync.Mutex
	broken    map[string]string // device ID or class -> reason ("crash" = failed alloc)
	offline   map[string]bool
	// metrics, when set, gives a device's candidate metrics; baseline is
	// every device's pre-switch measurement.
	metrics  func(id string, now, switched time.Time) *Metrics
	baseline *Metrics
	clock    *fakeClock
	switched map[string]time.Time
	// unavailable makes every health read fail (the watches are stale).
	unavailable bool
	// noAgent: the device agent does not run on these devices (no layer 1,
	// 2 or 4 checks); noL4 is the same for the functional check only.
	noAgent map[string]bool
	noL4    bool
	// lostConnectivity: these devices' connectivity check (layer 1) is
	// critical once they run the candidate (their node agents are going
	// away) while the servers still list them as up.
	lostConnectivity map[string]bool
	// flakySeen: devices whose one failing reading ("flaky") was given.
	flakySeen map[string]bool
}

// agentChecks are the device agent's checks on a device: the node's layers
// 1 and 2 and, for a running instance, layer 4 when it is declared.
func (h *fakeHealth) agentChecks(id string, instance bool) []CheckResult {
	if h.noAgent[id] {
		return nil
	}
	out := []CheckResult{{Name: "fleetplan L1 connectivity", Layer: 1, Status: "passing"}}
	if instance && h.lostConnectivity[id] {
		out[0].Status, out[0].Output = "critical", "the Nomad client at http://127.0.0.6:4646 does not answer: connection refused"
	}
	if h.policy != nil && h.policy.Health.System != nil {
		out = append(out, CheckResult{Name: "fleetplan L2 system", Layer: 2, Status: "passing"})
	}
	if instance && !h.noL4 && h.policy != nil && h.policy.Health.Functional != nil {
		out = append(out, CheckResult{Name: "fleetplan L4 functional", Layer: 4, Status: "passing"})
	}
	return out
}

func (h *fakeHealth) Baseline(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]*Metrics, error) {
	out := map[string]*Metrics{}
	if h.baseline == nil {
		return out, nil
	}
	for _, d := range devs {
		m := *h.baseline
		out[d.ID] = &m
	}
	return out, nil
}

func (h *fakeHealth) Health(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]DeviceHealth, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unavailable {
		return nil, errors.New("health watch of Nomad allocations: stale for 30s: Unexpected response code: 500")
	}
	out := map[string]DeviceHealth{}
	for _, d := range devs {
		if h.offline[d.ID] {
			out[d.ID] = DeviceHealth{Online: false}
			continue
		}
		if !strings.Contains(h.cluster.slot(d.ID), r.Candidate) {
			out[d.ID] = DeviceHealth{Online: true, Checks: h.agentChecks(d.ID, false)}
			continue
		}
		mode := h.broken[d.ID]
		if mode == "" {
			mode = h.broken[d.Class]
		}
		if mode == "" {
			mode = h.broken["*"]
		}
		if h.policy != nil && r.Version != h.policy.Release.Version && !h.oldBroken {
			// Faults are the release's: the old version (a rollback
			// verification looks at it) stays healthy.
			mode = ""
		}
		if mode == "flaky" {
			// The first reading after the switch catches the check
			// failing (the application still binding its port); later
			// ones pass.
			if h.flakySeen == nil {
				h.flakySeen = map[string]bool{}
			}
			if h.flakySeen[d.ID] {
				mode = ""
			} else {
				h.flakySeen[d.ID] = true
				mode = "unhealthy"
			}
		}
		switch mode {
		case "crash":
			out[d.ID] = DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "alloc-" + d.ID, Status: "failed", Restarts: 3}}
		case "unhealthy":
			out[d.ID] = DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "alloc-" + d.ID, Status: "running"},
				Checks: []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "critical", Output: `HTTP GET /health: 503 Output: {"status":"unhealthy"}`}}}
		default:
			dh := DeviceHealth{Online: true, Version: r.Version, Alloc: &AllocHealth{ID: "alloc-" + d.ID, Status: "running"},
				Checks: append([]CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "passing"}}, h.agentChecks(d.ID, true)...)}
			if h.metrics != nil {
				if h.switched == nil {
					h.switched = map[string]time.Time{}
				}
				now := h.clock.Now()
				if _, ok := h.switched[d.ID]; !ok {
					h.switched[d.ID] = now
				}
				dh.Metrics = h.metrics(d.ID, now, h.switched[d.ID])
			}
			out[d.ID] = dh
		}
	}
	return out, nil
}

// memStore is an in-memory Store with check-and-set semantics.
type memStore struct {
	mu       sync.Mutex
	idx      uint64
	state    map[string][]byte
	stateIdx map[string]uint64
	devices  map[string]map[string][]byte
	devIdx   map[string]map[string]uint64
	controls map[string]Controls
	ctrlIdx  uint64
	ctrlCond *sync.Cond
	active   map[string]*ActiveSlot
	history  map[string][]*Rollout
	// failSaves makes the next n SaveRollout calls fail (transient).
	failSaves int
	// batchSize, when > 0, makes SaveDevices write at most that many
	// records per call, as a store whose transactions are smaller would;
	// failBatches makes the next n SaveDevices calls fail after their
	// first transaction (transient).
	batchSize   int
	failBatches int
	// batches records the size of every SaveDevices call; singles counts
	// SaveDevice calls.
	batches []int
	singles int
}

func newMemStore() *memStore {
	s := &memStore{state: map[string][]byte{}, stateIdx: map[string]uint64{}, devices: map[string]map[string][]byte{},
		devIdx: map[string]map[string]uint64{}, controls: map[string]Controls{}, active: map[string]*ActiveSlot{}, history: map[string][]*Rollout{}, ctrlIdx: 1}
	s.ctrlCond = sync.NewCond(&s.mu)
	return s
}

func (s *memStore) Load(ctx context.Context, app string) (*Rollout, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.state[app]
	if !ok {
		return nil, nil
	}
	r := &Rollout{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, err
	}
	r.Index = s.stateIdx[app]
	r.Devices = map[string]*DeviceRecord{}
	for id, db := range s.devices[app] {
		d := &DeviceRecord{}
		if err := json.Unmarshal(db, d); err != nil {
			return nil, err
		}
		d.Index = s.devIdx[app][id]
		r.Devices[id] = d
	}
	return r, nil
}

func (s *memStore) SaveRollout(ctx context.Context, r *Rollout) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failSaves > 0 {
		s.failSaves--
		return fmt.Errorf("consul unavailable")
	}
	if s.stateIdx[r.App] != r.Index {
		return ErrConflict
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.idx++
	s.state[r.App] = b
	s.stateIdx[r.App] = s.idx
	r.Index = s.idx
	return nil
}

func (s *memStore) SaveDevice(ctx context.Context, app string, d *DeviceRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.singles++
	return s.saveDeviceLocked(app, d)
}

// SaveDevices writes the records as transactions of batchSize (all of
// them when 0): each is checked whole before anything of it is written.
func (s *memStore) SaveDevices(ctx context.Context, app string, recs []*DeviceRecord) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, len(recs))
	done := 0
	for done < len(recs) {
		end := len(recs)
		if s.batchSize > 0 {
			end = min(done+s.batchSize, len(recs))
		}
		if done > 0 && s.failBatches > 0 {
			s.failBatches--
			return done, fmt.Errorf("consul unavailable")
		}
		seen := map[string]bool{}
		for _, d := range recs[done:end] {
			if seen[d.ID] || s.devIdx[app][d.ID] != d.Index {
				return done, fmt.Errorf("device %s: %w", d.ID, ErrConflict)
			}
			seen[d.ID] = true
		}
		for _, d := range recs[done:end] {
			if err := s.saveDeviceLocked(app, d); err != nil {
				return done, err
			}
		}
		done = end
	}
	return done, nil
}

func (s *memStore) saveDeviceLocked(app string, d *DeviceRecord) error {
	if s.devices[app] == nil {
		s.devices[app] = map[string][]byte{}
		s.devIdx[app] = map[string]uint64{}
	}
	if s.devIdx[app][d.ID] != d.Index {
		return fmt.Errorf("device %s: %w", d.ID, ErrConflict)
	}
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	s.idx++
	s.devices[app][d.ID] = b
	s.devIdx[app][d.ID] = s.idx
	d.Index = s.idx
	return nil
}

func (s *memStore) Controls(ctx context.Context, app string, waitIndex uint64, wait time.Duration) (Controls, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if waitIndex > 0 {
		stop := context.AfterFunc(ctx, func() {
			s.mu.Lock()
			s.ctrlCond.Broadcast()
			s.mu.Unlock()
		})
		defer stop()
		for s.ctrlIdx == waitIndex && ctx.Err() == nil {
			s.ctrlCond.Wait()
		}
	}
	return s.controls[app], s.ctrlIdx, ctx.Err()
}

func (s *memStore) setControls(app string, f func(*Controls)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.controls[app]
	f(&c)
	s.controls[app] = c
	s.ctrlIdx++
	s.ctrlCond.Broadcast()
}

func (s *memStore) ClearControls(ctx context.Context, app string) error {
	s.setControls(app, func(c *Controls) { *c = Controls{} })
	return nil
}

func (s *memStore) ActiveSlot(ctx context.Context, app string) (*ActiveSlot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a := s.active[app]; a != nil {
		cp := *a
		return &cp, nil
	}
	return nil, nil
}

func (s *memStore) SetActiveSlot(ctx context.Context, app string, a *ActiveSlot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur uint64
	if old := s.active[app]; old != nil {
		cur = old.Index
	}
	if a.Index != cur {
		return fmt.Errorf("apps/%s: %w", app, ErrConflict)
	}
	s.idx++
	cp := *a
	cp.Index = s.idx
	a.Index = s.idx
	s.active[app] = &cp
	return nil
}

func (s *memStore) Archive(ctx context.Context, r *Rollout) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.history[r.App] = append(s.history[r.App], r)
	delete(s.devices, r.App)
	delete(s.devIdx, r.App)
	return nil
}

// fakeRegistry serves a fixed fleet.
type fakeRegistry struct {
	mu          sync.Mutex
	devices     []Device
	quarantined map[string]string
	// cluster, when set, gives each device's slot metadata (the registry
	// reads it from Nomad's node meta).
	cluster *fakeCluster
	app     string
}

func (f *fakeRegistry) Devices(ctx context.Context, p *Policy) ([]Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Device, len(f.devices))
	copy(out, f.devices)
	for i := range out {
		if _, ok := f.quarantined[out[i].ID]; ok {
			out[i].Status = StatusQuarantined
		}
		if f.cluster != nil {
			if v := f.cluster.slot(out[i].ID); v != "" {
				out[i].Apps = map[string]AppSlot{f.app: {Slot: v}}
			}
		}
	}
	return out, nil
}

func (f *fakeRegistry) Quarantine(ctx context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.quarantined == nil {
		f.quarantined = map[string]string{}
	}
	f.quarantined[id] = reason
	return nil
}

// fleet returns n devices over the three dev-cluster classes.
func fleet(n int) []Device {
	classes := []string{"jetson", "rpi", "gateway"}
	out := make([]Device, n)
	for i := range out {
		c := classes[i%3]
		out[i] = Device{ID: fmt.Sprintf("node-%03d", i), Name: fmt.Sprintf("%s-%d", c, i/3+1), Class: c, Status: StatusOK, NomadStatus: "ready"}
	}
	return out
}

func ctrlPolicy() *Policy {
	return &Policy{
		Name:        "edgeinfer",
		Release:     Release{Version: "2.0.0"},
		Strategy:    StrategyCanaryRolling,
		MaxParallel: 4,
		Canary:      Canary{Percent: 5, MinPerClass: 1, Soak: 30 * time.Second, Approval: ApprovalManual},
		Waves:       []Wave{{Percent: 50, Soak: 20 * time.Second}, {Percent: 100, Soak: 20 * time.Second}},
		Health:      Health{Grace: 10 * time.Second, Application: Application{Port: "http", Path: "/health", ExpectVersion: true, MaxRestarts: 2}},
		Rollback:    Rollback{MaxFailurePercent: 10, MaxOfflineAfterSwitchPercent: 10, Scope: ScopeWave},
		Offline:     Offline{CatchUp: true, MaxOfflinePercent: 50},
	}
}

type harness struct {
	t        *testing.T
	policy   *Policy
	cluster  *fakeCluster
	health   *fakeHealth
	store    *memStore
	registry *fakeRegistry
	clock    *fakeClock
	mu       sync.Mutex
	events   []Event
}

func newHarness(t *testing.T, n int) *harness {
	c := newFakeCluster()
	h := &harness{
		t: t, policy: ctrlPolicy(), cluster: c,
		health:   &fakeHealth{cluster: c, broken: map[string]string{}, offline: map[string]bool{}},
		store:    newMemStore(),
		registry: &fakeRegistry{devices: fleet(n), cluster: c, app: "edgeinfer"},
		clock:    newFakeClock(),
	}
	h.health.clock = h.clock
	h.health.policy = h.policy
	return h
}

func (h *harness) controller() *Controller {
	return &Controller{
		Policy: h.policy, Cluster: h.cluster, Health: h.health, Store: h.store, Registry: h.registry,
		Clock: h.clock, Actor: "tester@host", AutoApprove: true, SampleInterval: 2 * time.Second,
		OnEvent: func(e Event) {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		},
	}
}

func (h *harness) run(ctx context.Context) (*Rollout, error) {
	h.t.Helper()
	return h.controller().Run(ctx)
}

// assertSlots checks every device is on the wanted slot.
func (h *harness) assertSlots(want func(d Device) string) {
	h.t.Helper()
	for _, d := range h.registry.devices {
		if got, w := h.cluster.slot(d.ID), want(d); got != w {
			h.t.Errorf("device %s (%s) is on slot %q, want %q", d.Name, d.ID, got, w)
		}
	}
}

func (h *harness) eventsMatching(action, outcome string) []Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Event
	for _, e := range h.events {
		if strings.HasPrefix(e.Action, action) && (outcome == "" || e.Outcome == outcome) {
			out = append(out, e)
		}
	}
	return out
}

// upgradeFrom makes the fleet run version v in slot blue.
func (h *harness) upgradeFrom(v string) {
	h.store.active[h.policy.Name] = &ActiveSlot{Slot: SlotBlue, Version: v, Index: 1}
	for _, d := range h.registry.devices {
		h.cluster.slots[d.ID] = SlotBlue
	}
}
