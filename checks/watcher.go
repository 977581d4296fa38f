package checks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
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
	// AgentConfigFolder and SummaryFolder are the Consul KV folders of
	// the agents' configuration and of their summaries ("": the
	// defaults, store.DefaultAgentConfigPrefix and
	// contract.DefaultSummaryPrefix).
	AgentConfigFolder string
	SummaryFolder     string
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
		d.AgentConfigFolder, d.SummaryFolder = c.AgentConfigFolder, c.SummaryFolder
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

// Watcher follows, with blocking queries, the Nomad nodes, the
// allocations of every slot job it was asked about (one query filtered on
// the job IDs; the jobs' versions are read when an allocation names one it
// has not seen) and the Consul checks fleetplan reads (one query, filtered
// on the servers: the node-level checks fleetplan uses and the checks of
// the slot jobs' services, see checkFilter). Health answers from these
// caches; it never calls Nomad or Consul per device. Whatever the fleet
// size and however many slot jobs it follows, at most three blocking
// queries are open (OpenLongPolls).
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

	// open counts the blocking calls in flight.
	open atomic.Int64

	mu      sync.Mutex
	stopped bool
	nodesW  watch
	nodes   map[string]nodeInfo // by node ID
	nodeIDs map[string]string   // node name -> ID
	// nodesGen moves with every nodes answer that changed something.
	nodesGen uint64
	// lastNodes is the last nodes answer published.
	lastNodes []nodeInfo

	checksW *restartable
	cs      checkCache

	allocsW  *restartable
	allocGen uint64
	// lastAllocs is the last allocations answer published, for the jobs
	// lastAllocJobs.
	lastAllocs    []allocInfo
	lastAllocJobs []string
	jobs          map[string]*jobWatch

	// versions remembers the version parsed from check outputs.
	versions map[string]string
	// viewMin is the shortest list of devices Health keeps a view of (0:
	// none); viewClock orders the views' uses.
	viewMin   int
	viewClock uint64

	// lastRequest is the latest summary request per application (sumMu).
	sumMu       sync.Mutex
	lastRequest map[string]summaryRequest
}

// summaryRequest is a summary request the watcher made for a run.
type summaryRequest struct {
	run, id string
	at      time.Time
}

// jobWatch is one slot job's data.
type jobWatch struct {
	id, slot string
	view     jobView
	allocs   map[string][]allocInfo // by node ID
	// cache holds the health computed per device key, valid while the
	// generations it was computed at hold.
	cache map[string]*cachedHealth
	// views are the last answers for long lists of devices.
	views []*healthView
}

type cachedHealth struct {
	nodesGen, allocGen, epoch, checkGen uint64
	// nc is the node's checks entry (nil: none) in epoch.
	nc *nodeChecks
	h  scheduler.DeviceHealth
}

// restartable is a loop that is replaced when what it queries changes
// (the filter of the checks, the jobs of the allocations).
type restartable struct {
	loop   watch
	cancel context.CancelFunc
	gen    uint64
}

var (
	_ scheduler.HealthSource   = (*Watcher)(nil)
	_ scheduler.BaselineSource = (*Watcher)(nil)
	_ scheduler.SummarySource  = (*Watcher)(nil)
)

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
		src:      src,
		cfg:      DefaultConfig(),
		clk:      clk,
		logger:   logger.Named("watcher"),
		ctx:      ctx,
		cancel:   cancel,
		nodes:    map[string]nodeInfo{},
		nodeIDs:  map[string]string{},
		cs:       newCheckCache(),
		jobs:     map[string]*jobWatch{},
		versions: map[string]string{},
		viewMin:  defaultViewMin,
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

// OpenLongPolls is the number of blocking queries the watcher has open
// right now (at most three: nodes, allocations, checks).
func (w *Watcher) OpenLongPolls() int { return int(w.open.Load()) }

// blockingCall counts a blocking query while it is open.
func blockingCall[T any](w *Watcher, call func() (T, uint64, error)) (T, uint64, error) {
	w.open.Add(1)
	defer w.open.Add(-1)
	return call()
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

// goLoop runs a loop until Stop (or until ctx ends).
func (w *Watcher) goLoop(ctx context.Context, run func(context.Context) error) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = run(ctx)
	}()
}

func (w *Watcher) startGlobalLocked() {
	if w.nodesW != nil {
		return
	}
	wt := w.cfg.WaitTime
	nodes := newLoop(w, "nomad-nodes", w.logger,
		func(ctx context.Context, idx uint64) ([]nodeInfo, uint64, error) {
			return blockingCall(w, func() ([]nodeInfo, uint64, error) { return w.src.Nodes(ctx, query{idx, wt}) })
		},
		func(ns []nodeInfo) {
			w.mu.Lock()
			w.publishNodesLocked(ns)
			w.mu.Unlock()
		})
	w.nodesW = nodes
	w.goLoop(w.ctx, nodes.Run)
	w.restartChecksLocked()
}

// publishNodesLocked replaces the nodes by an answer. An answer equal to
// the last one (the nodes query wakes on any change of any node, e.g. the
// metadata a switch writes, which the answer does not show) changes
// nothing: the devices' health stays cached.
func (w *Watcher) publishNodesLocked(ns []nodeInfo) {
	if w.lastNodes != nil && slices.Equal(ns, w.lastNodes) {
		return
	}
	w.lastNodes = ns
	byID := make(map[string]nodeInfo, len(ns))
	ids := make(map[string]string, len(ns))
	for _, n := range ns {
		byID[n.ID] = n
		ids[n.Name] = n.ID
	}
	w.nodes, w.nodeIDs = byID, ids
	w.nodesGen++
}

// followedServices are the slot services of the followed jobs, sorted.
func (w *Watcher) followedServicesLocked() []slotService {
	seen := map[slotService]bool{}
	var out []slotService
	for _, jw := range w.jobs {
		for _, name := range jw.view.Services {
			s := slotService{name: name, tag: contract.SlotTag(jw.slot)}
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].name != out[j].name {
			return out[i].name < out[j].name
		}
		return out[i].tag < out[j].tag
	})
	return out
}

// restartChecksLocked (re)starts the one checks query with the filter of
// the followed services. The old loop's answers are dropped from then on.
func (w *Watcher) restartChecksLocked() {
	services := w.followedServicesLocked()
	filter := checkFilter(w.cfg.AgentServices, services)
	gen := uint64(1)
	if w.checksW != nil {
		w.checksW.cancel()
		gen = w.checksW.gen + 1
	}
	wt := w.cfg.WaitTime
	ctx, cancel := context.WithCancel(w.ctx)
	l := newLoop(w, "consul-checks", w.logger,
		func(ctx context.Context, idx uint64) (checksAnswer, uint64, error) {
			cs, i, err := blockingCall(w, func() ([]checkInfo, uint64, error) { return w.src.Checks(ctx, filter, query{idx, wt}) })
			return checksAnswer{checks: cs, index: i}, i, err
		},
		func(a checksAnswer) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.checksW == nil || w.checksW.gen != gen {
				return
			}
			w.cs.merge(a.checks, a.index)
		})
	// A new filter: the cache is rebuilt from the new loop's first answer.
	w.cs.reset()
	w.checksW = &restartable{loop: l, cancel: cancel, gen: gen}
	w.goLoop(ctx, l.Run)
	w.logger.Debug("following checks", "services", len(services), "agent_services", len(w.cfg.AgentServices))
}

// checksAnswer is one answer of the checks loop.
type checksAnswer struct {
	checks []checkInfo
	index  uint64
}

// allocsAnswer is one answer of the allocations loop: the allocations and
// the views of the jobs that were read again.
type allocsAnswer struct {
	allocs []allocInfo
	views  map[string]jobRead
}

type jobRead struct {
	view     jobView
	maxAlloc uint64
}

// restartAllocsLocked (re)starts the one allocations query on the
// followed jobs.
func (w *Watcher) restartAllocsLocked() {
	ids := make([]string, 0, len(w.jobs))
	for id := range w.jobs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	gen := uint64(1)
	if w.allocsW != nil {
		w.allocsW.cancel()
		gen = w.allocsW.gen + 1
	}
	wt := w.cfg.WaitTime
	ctx, cancel := context.WithCancel(w.ctx)
	// The job views this loop read, touched only by its goroutine.
	views := map[string]jobRead{}
	l := newLoop(w, "nomad-allocations", w.logger,
		func(ctx context.Context, idx uint64) (allocsAnswer, uint64, error) {
			as, i, err := blockingCall(w, func() ([]allocInfo, uint64, error) { return w.src.Allocations(ctx, ids, query{idx, wt}) })
			if err != nil {
				return allocsAnswer{}, 0, err
			}
			read, err := w.readJobs(ctx, ids, as, views)
			if err != nil {
				return allocsAnswer{}, 0, err
			}
			return allocsAnswer{allocs: as, views: read}, i, nil
		},
		func(a allocsAnswer) {
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.allocsW == nil || w.allocsW.gen != gen {
				return
			}
			w.publishAllocsLocked(ids, a)
		})
	w.allocsW = &restartable{loop: l, cancel: cancel, gen: gen}
	w.goLoop(ctx, l.Run)
}

// readJobs reads the versions of the jobs whose allocations changed in a
// way the known versions cannot explain: first answer, new allocations,
// or a job version not seen yet. It returns the views read.
func (w *Watcher) readJobs(ctx context.Context, ids []string, as []allocInfo, views map[string]jobRead) (map[string]jobRead, error) {
	out := map[string]jobRead{}
	for _, id := range ids {
		prev, known := views[id]
		var maxAlloc uint64
		need := !known
		for _, a := range as {
			if a.JobID != id {
				continue
			}
			if a.CreateIndex > maxAlloc {
				maxAlloc = a.CreateIndex
			}
			if _, ok := prev.view.Versions[a.JobVersion]; !ok {
				need = true
			}
		}
		if maxAlloc > prev.maxAlloc {
			need = true
		}
		if !need {
			continue
		}
		v, err := w.src.Job(ctx, id, prev.view)
		for try := 0; err == nil && try < jobReadRetries && behindView(v, id, as); try++ {
			// Allocations of a version the job list does not show yet
			// (two reads at different indexes): read again shortly.
			if err = w.clk.Sleep(ctx, jobReadRetryPause); err == nil {
				v, err = w.src.Job(ctx, id, v)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("reading the versions of job %s: %w", id, err)
		}
		out[id] = jobRead{view: v, maxAlloc: maxAlloc}
	}
	// Remembered only once every read succeeded: an answer that fails is
	// not published, so its reads must be made again.
	for id, r := range out {
		views[id] = r
	}
	return out, nil
}

// jobReadRetries and jobReadRetryPause bound the reads of a job whose
// allocations run a version it does not list yet.
const (
	jobReadRetries    = 3
	jobReadRetryPause = 200 * time.Millisecond
)

// behindView reports allocations of the job running a version newer than
// the view's latest.
func behindView(v jobView, id string, as []allocInfo) bool {
	if !v.Found {
		return false
	}
	for _, a := range as {
		if a.JobID == id && a.JobVersion > v.Latest && !v.leftover(a) {
			return true
		}
	}
	return false
}

// publishAllocsLocked replaces the followed jobs' allocations by an
// answer. An answer equal to the last one for the same jobs, without job
// reads (Nomad's allocations index moves with every allocation of the
// cluster, other jobs' too), changes nothing.
func (w *Watcher) publishAllocsLocked(ids []string, a allocsAnswer) {
	if len(a.views) == 0 && w.lastAllocs != nil && slices.Equal(ids, w.lastAllocJobs) && slices.Equal(a.allocs, w.lastAllocs) {
		return
	}
	w.lastAllocs, w.lastAllocJobs = a.allocs, ids
	if w.lastAllocs == nil {
		w.lastAllocs = []allocInfo{}
	}
	servicesChanged := false
	for _, id := range ids {
		jw := w.jobs[id]
		if jw == nil {
			continue
		}
		if r, ok := a.views[id]; ok {
			if !slicesEqual(jw.view.Services, r.view.Services) {
				servicesChanged = true
			}
			jw.view = r.view
		}
		jw.allocs = map[string][]allocInfo{}
	}
	for _, al := range a.allocs {
		if jw := w.jobs[al.JobID]; jw != nil {
			jw.allocs[al.NodeID] = append(jw.allocs[al.NodeID], al)
		}
	}
	w.allocGen++
	if servicesChanged && !w.stopped {
		w.restartChecksLocked()
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (w *Watcher) watchJobLocked(jobID, slot string) *jobWatch {
	if jw, ok := w.jobs[jobID]; ok {
		return jw
	}
	jw := &jobWatch{
		id:     jobID,
		slot:   slot,
		allocs: map[string][]allocInfo{},
		cache:  map[string]*cachedHealth{},
	}
	w.jobs[jobID] = jw
	w.restartAllocsLocked()
	w.logger.Debug("following slot job", "job", jobID, "slot", slot)
	return jw
}

// fetches is the number of calls every loop made so far.
func (w *Watcher) fetches() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n uint64
	for _, l := range []watch{w.nodesW, w.loopOf(w.checksW), w.loopOf(w.allocsW)} {
		if l != nil {
			n += l.Fetches()
		}
	}
	return n
}

func (w *Watcher) loopOf(r *restartable) watch {
	if r == nil {
		return nil
	}
	return r.loop
}
