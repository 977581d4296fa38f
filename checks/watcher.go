package checks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Timing tunes the watcher's blocking-query loops.
type Timing = blocking.Timing

// watch is what the watcher needs of a running blocking.Loop.
type watch interface {
	State() blocking.State
	Fetches() uint64
}

// Config tunes the watcher.
type Config struct {
	Timing
	// StaleAfter is how long a watch may fail before Health reports the
	// data as stale (ErrStale) instead of answering from the last good
	// response.
	StaleAfter time.Duration
	// AgentServices are Consul services (no slot tag) whose checks count
	// on every device, e.g. the device agent's service when it registers
	// its layer checks there. Node-level checks are always included.
	AgentServices []string
}

// DefaultConfig is the configuration NewWatcher uses.
func DefaultConfig() Config {
	return Config{
		Timing: Timing{
			MinInterval: 500 * time.Millisecond,
			BackoffBase: 250 * time.Millisecond,
			BackoffMax:  5 * time.Second,
			WaitTime:    60 * time.Second,
		},
		StaleAfter: 10 * time.Second,
	}
}

// Option configures a Watcher.
type Option func(*Watcher)

// WithConfig replaces the default configuration; zero fields keep their
// defaults.
func WithConfig(c Config) Option {
	return func(w *Watcher) {
		d := DefaultConfig()
		if c.MinInterval > 0 {
			d.MinInterval = c.MinInterval
		}
		if c.BackoffBase > 0 {
			d.BackoffBase = c.BackoffBase
		}
		if c.BackoffMax > 0 {
			d.BackoffMax = c.BackoffMax
		}
		if c.WaitTime > 0 {
			d.WaitTime = c.WaitTime
		}
		if c.StaleAfter > 0 {
			d.StaleAfter = c.StaleAfter
		}
		d.AgentServices = c.AgentServices
		w.cfg = d
	}
}

// ErrStale is matched (errors.Is) by the error Health returns while one of
// the watches it depends on has been failing for longer than StaleAfter
// (Nomad or Consul restarting, unreachable). The verdict is inconclusive:
// wait and ask again.
var ErrStale = errors.New("cluster health data is stale")

// ErrStopped is returned by Health after Stop.
var ErrStopped = errors.New("health watcher stopped")

// StaleError names the failing watch.
type StaleError struct {
	Watch string
	Since time.Time
	Err   error
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("%v: watch %s failing since %s: %v", ErrStale, e.Watch, e.Since.Format(time.RFC3339), e.Err)
}

// Is matches ErrStale and scheduler.ErrControlPlane: stale data comes from
// Nomad or Consul not answering, never from a device (invariant I5).
func (e *StaleError) Is(target error) bool {
	return target == ErrStale || target == scheduler.ErrControlPlane
}
func (e *StaleError) Unwrap() error { return e.Err }

// Watcher follows, with blocking queries, the Nomad nodes, the Consul node
// checks, and for every slot job it was asked about: the job's versions,
// its allocations and the Consul health of its services. Health answers
// from these caches; it never calls Nomad or Consul per device.
//
// Watches start on the first Health call for a slot job (or WatchJob) and
// run until Stop.
type Watcher struct {
	src    source
	cfg    Config
	clk    blocking.Clock
	logger hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	stopped    bool
	global     []watch
	nodes      map[string]nodeInfo    // by node ID
	nodeIDs    map[string]string      // node name -> ID
	nodeChecks map[string][]checkInfo // by node name
	agent      map[string]map[string][]instance
	jobs       map[string]*jobWatch
}

// jobWatch is one slot job's watches and their data.
type jobWatch struct {
	id, slot  string
	loops     []watch // job, allocations
	services  map[string]watch
	view      jobView
	allocs    map[string][]allocInfo // by node ID
	instances map[string]map[string][]instance
}

var _ scheduler.HealthSource = (*Watcher)(nil)

// NewWatcher returns a watcher on the clients. It starts nothing until
// Health or WatchJob is called.
func NewWatcher(nc *nomadapi.Client, cc *consulapi.Client, logger hclog.Logger, opts ...Option) *Watcher {
	return newWatcher(apiSource{nomad: nc, consul: cc}, logger, blocking.Clock{}, opts...)
}

func newWatcher(src source, logger hclog.Logger, clk blocking.Clock, opts ...Option) *Watcher {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &Watcher{
		src:        src,
		cfg:        DefaultConfig(),
		clk:        clk,
		logger:     logger.Named("watcher"),
		ctx:        ctx,
		cancel:     cancel,
		nodes:      map[string]nodeInfo{},
		nodeIDs:    map[string]string{},
		nodeChecks: map[string][]checkInfo{},
		agent:      map[string]map[string][]instance{},
		jobs:       map[string]*jobWatch{},
	}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Stop ends every watch and waits for them.
func (w *Watcher) Stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
}

// WatchJob starts following a slot job (and the nodes) if it is not yet
// followed, so that a later Health call finds warm caches.
func (w *Watcher) WatchJob(jobID, slot string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return ErrStopped
	}
	w.startGlobalLocked()
	w.watchJobLocked(jobID, slot)
	return nil
}

// newLoop makes one of the watcher's blocking-query loops.
func newLoop[T any](w *Watcher, name string, logger hclog.Logger, fetch blocking.Fetch[T], publish func(T)) *blocking.Loop[T] {
	return blocking.New(blocking.Config{Name: name, Timing: w.cfg.Timing, Clock: w.clk, Logger: logger}, fetch,
		func(v T) error {
			publish(v)
			return nil
		})
}

// goLoop runs a loop until Stop.
func (w *Watcher) goLoop(run func(context.Context) error) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = run(w.ctx)
	}()
}

func (w *Watcher) startGlobalLocked() {
	if w.global != nil {
		return
	}
	wt := w.cfg.WaitTime
	nodes := newLoop(w, "nomad-nodes", w.logger,
		func(ctx context.Context, idx uint64) ([]nodeInfo, uint64, error) {
			return w.src.Nodes(ctx, query{idx, wt})
		},
		func(ns []nodeInfo) {
			byID := make(map[string]nodeInfo, len(ns))
			ids := make(map[string]string, len(ns))
			for _, n := range ns {
				byID[n.ID] = n
				ids[n.Name] = n.ID
			}
			w.mu.Lock()
			w.nodes, w.nodeIDs = byID, ids
			w.mu.Unlock()
		})
	checks := newLoop(w, "consul-node-checks", w.logger,
		func(ctx context.Context, idx uint64) ([]checkInfo, uint64, error) {
			return w.src.NodeChecks(ctx, query{idx, wt})
		},
		func(cs []checkInfo) {
			byNode := map[string][]checkInfo{}
			for _, c := range cs {
				byNode[c.Node] = append(byNode[c.Node], c)
			}
			w.mu.Lock()
			w.nodeChecks = byNode
			w.mu.Unlock()
		})
	w.global = []watch{nodes, checks}
	w.goLoop(nodes.Run)
	w.goLoop(checks.Run)
	for _, svc := range w.cfg.AgentServices {
		l := w.serviceLoop(w.logger, svc, "", func(byNode map[string][]instance) {
			w.mu.Lock()
			w.agent[svc] = byNode
			w.mu.Unlock()
		})
		w.global = append(w.global, l)
		w.goLoop(l.Run)
	}
}

func (w *Watcher) serviceLoop(logger hclog.Logger, service, tag string, publish func(map[string][]instance)) *blocking.Loop[[]instance] {
	wt := w.cfg.WaitTime
	return newLoop(w, "consul-service "+service, logger,
		func(ctx context.Context, idx uint64) ([]instance, uint64, error) {
			return w.src.Service(ctx, service, tag, query{idx, wt})
		},
		func(ins []instance) {
			byNode := map[string][]instance{}
			for _, in := range ins {
				byNode[in.Node] = append(byNode[in.Node], in)
			}
			publish(byNode)
		})
}

func (w *Watcher) watchJobLocked(jobID, slot string) *jobWatch {
	if jw, ok := w.jobs[jobID]; ok {
		return jw
	}
	jw := &jobWatch{
		id:        jobID,
		slot:      slot,
		services:  map[string]watch{},
		allocs:    map[string][]allocInfo{},
		instances: map[string]map[string][]instance{},
	}
	w.jobs[jobID] = jw
	logger := w.logger.With("job", jobID)
	wt := w.cfg.WaitTime

	// The job loop keeps the previous view so that the source only asks
	// for the versions when the job changed. It is only touched by the
	// loop's goroutine.
	var prev jobView
	job := newLoop(w, "nomad-job", logger,
		func(ctx context.Context, idx uint64) (jobView, uint64, error) {
			v, i, err := w.src.Job(ctx, jobID, prev, query{idx, wt})
			if err == nil {
				prev = v
			}
			return v, i, err
		},
		func(v jobView) {
			w.mu.Lock()
			defer w.mu.Unlock()
			jw.view = v
			if w.stopped {
				return
			}
			for _, svc := range v.Services {
				if _, ok := jw.services[svc]; ok {
					continue
				}
				l := w.serviceLoop(logger, svc, contract.SlotTag(slot), func(byNode map[string][]instance) {
					w.mu.Lock()
					jw.instances[svc] = byNode
					w.mu.Unlock()
				})
				jw.services[svc] = l
				w.goLoop(l.Run)
			}
		})
	allocs := newLoop(w, "nomad-allocations", logger,
		func(ctx context.Context, idx uint64) ([]allocInfo, uint64, error) {
			return w.src.Allocations(ctx, jobID, query{idx, wt})
		},
		func(as []allocInfo) {
			byNode := map[string][]allocInfo{}
			for _, a := range as {
				byNode[a.NodeID] = append(byNode[a.NodeID], a)
			}
			w.mu.Lock()
			jw.allocs = byNode
			w.mu.Unlock()
		})
	jw.loops = []watch{job, allocs}
	w.goLoop(job.Run)
	w.goLoop(allocs.Run)
	logger.Debug("following slot job", "slot", slot)
	return jw
}

// fetches is the number of calls every loop made so far.
func (w *Watcher) fetches() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n uint64
	for _, l := range w.global {
		n += l.Fetches()
	}
	for _, jw := range w.jobs {
		for _, l := range jw.loops {
			n += l.Fetches()
		}
		for _, l := range jw.services {
			n += l.Fetches()
		}
	}
	return n
}
