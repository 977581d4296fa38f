// Package simfleet runs the rollout controller (scheduler.Controller)
// against in-memory stand-ins of the Nomad and Consul APIs behind its
// ports, at any fleet size, on simulated time: a run of 100,000 devices
// with 10-minute soaks takes seconds and shows the controller's own costs
// (CPU, memory, state writes) as the fleet grows.
//
// The stand-ins behave like the real ones where it matters for cost and
// ordering: every change takes an index and readers follow them with
// blocking queries (index, wake on change, wait time), writes are
// check-and-set, devices complete a switch after simulated delays, and a
// chosen share of them fails the release.
package simfleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Config is one simulated run.
type Config struct {
	Devices int
	// Classes are the node classes, devices spread evenly (default 3).
	Classes []string
	// Offline is the share of devices offline from the start (skipped,
	// never failed).
	Offline float64
	// Fail is the share of devices on which the release fails (its
	// check turns critical); FailAfter is the share of the fleet switched
	// before the failures start (0: from the canary on).
	Fail      float64
	FailAfter float64
	// MaxParallel is the policy's max_parallel (default 100).
	MaxParallel int
	// SampleInterval is the controller's health sampling interval
	// (default 10s); soaks are the policy's (default: canary 10m, waves
	// 5m, with waves at 10, 25, 50 and 100%).
	SampleInterval time.Duration
	Seed           uint64
	// Logger receives the controller's logs (default: none).
	Logger hclog.Logger
	// MemSample is how often (real time) memory is sampled (default 10ms).
	MemSample time.Duration
}

// Result is what a run cost and how it ended.
type Result struct {
	Rollout *scheduler.Rollout
	Tally   scheduler.Tally
	// Wall is the real time of the controller's run; Simulated the
	// simulated time it covered.
	Wall, Simulated time.Duration
	// HeapBefore is the heap in use once the fakes were built, before the
	// controller ran; PeakHeap the highest heap in use sampled during the
	// run (fakes included); VmHWM the process' peak resident set (Linux),
	// in bytes, 0 when unknown.
	HeapBefore, PeakHeap, VmHWM uint64
	// Mallocs and AllocBytes are the allocations during the run.
	Mallocs, AllocBytes uint64
	Store               StoreStats
	Fleet               FleetStats
	HealthCalls         int64
	Quarantined         int
}

// Policy is the policy of a simulated run.
func Policy(cfg Config) *scheduler.Policy {
	p := &scheduler.Policy{
		Name:        "edgeinfer",
		Strategy:    scheduler.StrategyCanaryRolling,
		MaxParallel: cfg.MaxParallel,
		Release:     scheduler.Release{Version: "2.0"},
		Canary:      scheduler.Canary{Percent: 1, MinPerClass: 1, Soak: 10 * time.Minute, Approval: scheduler.ApprovalAuto},
		Health: scheduler.Health{
			Grace:       30 * time.Second,
			Application: scheduler.Application{Interval: 10 * time.Second, MaxRestarts: 3},
		},
		Rollback: scheduler.Rollback{MaxFailurePercent: 5, MaxOfflineAfterSwitchPercent: 5, Scope: scheduler.ScopeFleet},
		Offline:  scheduler.Offline{CatchUp: false, MaxOfflinePercent: 10},
	}
	for _, pct := range []float64{10, 25, 50, 100} {
		p.Waves = append(p.Waves, scheduler.Wave{Percent: pct, Soak: 5 * time.Minute})
	}
	return p
}

func (cfg *Config) defaults() {
	if len(cfg.Classes) == 0 {
		cfg.Classes = []string{"jetson", "rpi", "gateway"}
	}
	if cfg.MaxParallel <= 0 {
		cfg.MaxParallel = 100
	}
	if cfg.SampleInterval <= 0 {
		cfg.SampleInterval = 10 * time.Second
	}
	if cfg.MemSample <= 0 {
		cfg.MemSample = 10 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
}

// Sim is a simulated fleet with its stand-ins, ready for a controller.
type Sim struct {
	Clock    *Clock
	Fleet    *Fleet
	Store    *Store
	Registry *Registry
	Policy   *scheduler.Policy
	Watcher  *Watcher
	cfg      Config
}

// New builds the fleet: devices on the blue slot running 1.0, 1.0 the
// active version, the watcher following the fleet until ctx ends.
func New(ctx context.Context, cfg Config) (*Sim, error) {
	cfg.defaults()
	if cfg.Devices <= 0 {
		return nil, fmt.Errorf("a simulated fleet needs devices (got %d)", cfg.Devices)
	}
	clock := NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Devices)))
	refs := make([]scheduler.DeviceRef, cfg.Devices)
	offline := make([]bool, cfg.Devices)
	failing := make([]bool, cfg.Devices)
	for i := range refs {
		class := cfg.Classes[i%len(cfg.Classes)]
		refs[i] = scheduler.DeviceRef{
			ID:    fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint32()&0xffff, rng.Uint64()&0xffffffffffff),
			Name:  class + "-" + strconv.Itoa(i),
			Class: class,
		}
		offline[i] = rng.Float64() < cfg.Offline
		failing[i] = rng.Float64() < cfg.Fail
	}
	fleet := NewFleet(clock, FleetConfig{
		SwitchLatency: 2 * time.Second,
		Parallel:      cfg.MaxParallel,
		StartDelay:    5 * time.Second,
		CheckDelay:    15 * time.Second,
		FailVersion:   "2.0",
		FailDevice:    func(i int) bool { return failing[i] },
		FailAfter:     int64(cfg.FailAfter * float64(cfg.Devices)),
	}, refs, "1.0", func(i int) bool { return offline[i] })
	store := NewStore(clock)
	p := Policy(cfg)
	if err := store.SetActiveSlot(ctx, p.Name, &scheduler.ActiveSlot{Slot: scheduler.SlotBlue, Version: "1.0", RolloutID: "r0", Since: clock.Now()}); err != nil {
		return nil, err
	}
	reg := NewRegistry(refs, p.Name, "1.0", offline)
	return &Sim{
		Clock: clock, Fleet: fleet, Store: store, Registry: reg, Policy: p,
		Watcher: Watch(ctx, fleet, 5*time.Minute),
		cfg:     cfg,
	}, nil
}

// Controller is a controller of the simulated fleet: auto-approve, no
// audit trail, the simulated clock.
func (s *Sim) Controller() *scheduler.Controller {
	return &scheduler.Controller{
		Policy:         s.Policy,
		Cluster:        s.Fleet,
		Health:         s.Watcher,
		Store:          s.Store,
		Registry:       s.Registry,
		Clock:          s.Clock,
		Logger:         s.cfg.Logger,
		Actor:          "simfleet",
		AutoApprove:    true,
		SampleInterval: s.cfg.SampleInterval,
	}
}

// Run builds a fleet, runs one controller until the rollout ends (done,
// rolled back, halted) and measures it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return s.Run(ctx)
}

// Run runs one controller on the fleet until the rollout ends and
// measures it.
func (s *Sim) Run(ctx context.Context) (*Result, error) {
	res := &Result{}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	res.HeapBefore = before.HeapInuse

	var peak atomic.Uint64
	peak.Store(before.HeapInuse)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.cfg.MemSample)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()

	simStart := s.Clock.Now()
	start := time.Now()
	r, runErr := s.Controller().Run(ctx)
	res.Wall = time.Since(start)
	close(stop)
	wg.Wait()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	res.PeakHeap = max(peak.Load(), after.HeapInuse)
	res.Mallocs = after.Mallocs - before.Mallocs
	res.AllocBytes = after.TotalAlloc - before.TotalAlloc
	res.VmHWM = vmHWM()
	res.Simulated = s.Clock.Now().Sub(simStart)
	res.Rollout = r
	if r != nil {
		res.Tally = r.FleetTally()
	}
	res.Store = s.Store.Stats()
	res.Fleet = s.Fleet.Stats()
	res.HealthCalls = s.Watcher.Calls()
	res.Quarantined = s.Registry.QuarantinedCount()
	return res, runErr
}

// vmHWM reads the process' peak resident set from /proc/self/status.
func vmHWM() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}

// Registry is the simulated device registry (scheduler.Registry).
type Registry struct {
	devices []scheduler.Device

	mu          sync.Mutex
	quarantined map[string]string
}

// NewRegistry lists the devices with the app on the blue slot at version.
func NewRegistry(refs []scheduler.DeviceRef, app, version string, offline []bool) *Registry {
	// One map for every device: the controller copies before it changes
	// a device's apps.
	apps := map[string]scheduler.AppSlot{app: {Slot: scheduler.SlotBlue, Version: version}}
	out := make([]scheduler.Device, len(refs))
	for i, ref := range refs {
		d := scheduler.Device{ID: ref.ID, Name: ref.Name, Class: ref.Class, Datacenter: "dc1",
			NomadStatus: scheduler.NomadStatusReady, Eligibility: "eligible", ConsulStatus: scheduler.SerfPassing,
			Apps: apps, Status: scheduler.StatusOK}
		if offline[i] {
			d.NomadStatus, d.ConsulStatus, d.Status = "down", scheduler.SerfCritical, scheduler.StatusOffline
		}
		out[i] = d
	}
	return &Registry{devices: out, quarantined: map[string]string{}}
}

// Devices implements scheduler.Registry.
func (g *Registry) Devices(ctx context.Context, p *scheduler.Policy) ([]scheduler.Device, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]scheduler.Device, len(g.devices))
	copy(out, g.devices)
	for i := range out {
		if reason, ok := g.quarantined[out[i].ID]; ok {
			out[i].Status, out[i].Reason = scheduler.StatusQuarantined, reason
		}
	}
	return out, nil
}

// Quarantine implements scheduler.Registry.
func (g *Registry) Quarantine(ctx context.Context, deviceID, reason string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.quarantined[deviceID] = reason
	return nil
}

// QuarantinedCount is how many devices were quarantined.
func (g *Registry) QuarantinedCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.quarantined)
}
