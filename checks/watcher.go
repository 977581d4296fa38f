package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

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

func (e *StaleError) Is(target error) bool { return target == ErrStale }
func (e *StaleError) Unwrap() error        { return e.Err }

// SlotJobID is the Nomad job of an application's slot.
func SlotJobID(app, slot string) string { return app + "-" + slot }

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
	clk    clock
	logger hclog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	stopped    bool
	global     []stateful
	nodes      map[string]nodeInfo    // by node ID
	nodeIDs    map[string]string      // node name -> ID
	nodeChecks map[string][]checkInfo // by node name
	agent      map[string]map[string][]instance
	jobs       map[string]*jobWatch
}

// jobWatch is one slot job's watches and their data.
type jobWatch struct {
	id, slot  string
	loops     []stateful // job, allocations
	services  map[string]stateful
	view      jobView
	allocs    map[string][]allocInfo // by node ID
	instances map[string]map[string][]instance
}

var _ scheduler.HealthSource = (*Watcher)(nil)

// NewWatcher returns a watcher on the clients. It starts nothing until
// Health or WatchJob is called.
func NewWatcher(nc *nomadapi.Client, cc *consulapi.Client, logger hclog.Logger, opts ...Option) *Watcher {
	return newWatcher(apiSource{nomad: nc, consul: cc}, logger, realClock(), opts...)
}

func realClock() clock {
	return clock{
		now:   time.Now,
		sleep: sleepCtx,
		jitter: func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return time.Duration(rand.Int64N(int64(n)))
		},
	}
}

func newWatcher(src source, logger hclog.Logger, clk clock, opts ...Option) *Watcher {
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

func (w *Watcher) goLoop(run func(context.Context)) {
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		run(w.ctx)
	}()
}

func (w *Watcher) startGlobalLocked() {
	if w.global != nil {
		return
	}
	wt := w.cfg.WaitTime
	nodes := newLoop("nomad-nodes", w.cfg.Timing, w.clk, w.logger,
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
	checks := newLoop("consul-node-checks", w.cfg.Timing, w.clk, w.logger,
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
	w.global = []stateful{nodes, checks}
	w.goLoop(nodes.run)
	w.goLoop(checks.run)
	for _, svc := range w.cfg.AgentServices {
		l := w.serviceLoop(w.logger, svc, "", func(byNode map[string][]instance) {
			w.mu.Lock()
			w.agent[svc] = byNode
			w.mu.Unlock()
		})
		w.global = append(w.global, l)
		w.goLoop(l.run)
	}
}

func (w *Watcher) serviceLoop(logger hclog.Logger, service, tag string, publish func(map[string][]instance)) *loop[[]instance] {
	wt := w.cfg.WaitTime
	return newLoop("consul-service "+service, w.cfg.Timing, w.clk, logger,
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
		services:  map[string]stateful{},
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
	job := newLoop("nomad-job", w.cfg.Timing, w.clk, logger,
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
				l := w.serviceLoop(logger, svc, SlotTag(slot), func(byNode map[string][]instance) {
					w.mu.Lock()
					jw.instances[svc] = byNode
					w.mu.Unlock()
				})
				jw.services[svc] = l
				w.goLoop(l.run)
			}
		})
	allocs := newLoop("nomad-allocations", w.cfg.Timing, w.clk, logger,
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
	jw.loops = []stateful{job, allocs}
	w.goLoop(job.run)
	w.goLoop(allocs.run)
	logger.Debug("following slot job", "slot", slot)
	return jw
}

// pickAlloc chooses the allocation that speaks for a node: one that is
// meant to run and has not ended, else one that has not ended (being
// stopped), else the newest one that ended by itself (failed, or exited)
// in the job's latest version. Two kinds of ended allocations are left out
// because they say nothing about the candidate: those Nomad stopped on
// purpose (desired stop or evict: replaced, the device switched away, the
// job stopped), and those of an older job version, what remains of an
// earlier rollout that used this slot until Nomad collects it. Reading
// either as "complete" would fail a device that was just switched and
// whose new allocation is not placed yet.
func pickAlloc(as []allocInfo, v jobView) (allocInfo, bool) {
	rank := func(a allocInfo) int {
		live := a.ClientStatus == "pending" || a.ClientStatus == "running" || a.ClientStatus == "unknown"
		switch {
		case live && a.DesiredStatus == "run":
			return 2
		case live:
			return 1
		}
		return 0
	}
	var best allocInfo
	found := false
	for _, a := range as {
		if rank(a) == 0 && (a.DesiredStatus != "run" || (v.Found && a.JobVersion < v.Latest)) {
			continue
		}
		if !found || rank(a) > rank(best) || (rank(a) == rank(best) && a.CreateIndex > best.CreateIndex) {
			best, found = a, true
		}
	}
	return best, found
}

// Health reports the candidate slot's health on each device, keyed by
// device ID. It waits (bounded by ctx) for the first response of every
// watch involved, so that a cold cache never reads as "no allocation", and
// returns an error matching ErrStale while one of them has been failing for
// longer than StaleAfter.
func (w *Watcher) Health(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.DeviceHealth, error) {
	if r == nil || r.App == "" || r.Candidate == "" {
		return nil, errors.New("health: the rollout names no application or candidate slot")
	}
	jobID := SlotJobID(r.App, r.Candidate)
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil, ErrStopped
	}
	w.startGlobalLocked()
	jw := w.watchJobLocked(jobID, r.Candidate)
	w.mu.Unlock()

	if err := w.await(ctx, jw); err != nil {
		return nil, err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]scheduler.DeviceHealth, len(devices))
	for _, d := range devices {
		key := d.ID
		if key == "" {
			key = d.Name
		}
		out[key] = w.deviceHealthLocked(jw, d)
	}
	return out, nil
}

// awaitPoll is how often await re-reads the loops' states while waiting.
const awaitPoll = 100 * time.Millisecond

// await waits until every watch the job depends on has answered once and
// the job's versions cover its allocations.
func (w *Watcher) await(ctx context.Context, jw *jobWatch) error {
	var behindSince time.Time
	for {
		wait, err := w.pending(jw, &behindSince)
		if err != nil {
			return err
		}
		if wait == nil {
			return nil
		}
		t := time.NewTimer(awaitPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("health of %s: waiting for the first answer of the watches: %w", jw.id, ctx.Err())
		case <-w.ctx.Done():
			t.Stop()
			return ErrStopped
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}

// pending returns a channel to wait on when a watch has not answered yet
// (nil when all did), or the stale error.
func (w *Watcher) pending(jw *jobWatch, behindSince *time.Time) (<-chan struct{}, error) {
	w.mu.Lock()
	loops := append(append([]stateful{}, w.global...), jw.loops...)
	names := make([]string, 0, len(jw.services))
	for n := range jw.services {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		loops = append(loops, jw.services[n])
	}
	behind := false
	if jw.view.Found {
		for _, as := range jw.allocs {
			for _, a := range as {
				if a.JobVersion > jw.view.Latest {
					behind = true
				}
			}
		}
	}
	w.mu.Unlock()

	now := w.clk.now()
	var wait <-chan struct{}
	for _, l := range loops {
		st := l.state()
		if !st.failingSince.IsZero() && now.Sub(st.failingSince) >= w.cfg.StaleAfter {
			return nil, &StaleError{Watch: st.name, Since: st.failingSince, Err: st.lastErr}
		}
		select {
		case <-st.ready:
		default:
			if wait == nil {
				wait = st.ready
			}
		}
	}
	if wait != nil {
		return wait, nil
	}
	if behind {
		// The allocations name a job version the job watch has not seen
		// yet: it is about to answer.
		if behindSince.IsZero() {
			*behindSince = now
		} else if now.Sub(*behindSince) >= w.cfg.StaleAfter {
			return nil, &StaleError{Watch: "nomad-job " + jw.id, Since: *behindSince,
				Err: errors.New("allocations run a job version the job watch has not seen")}
		}
		never := make(chan struct{})
		return never, nil
	}
	return nil, nil
}

// deviceHealthLocked assembles one device's health from the caches.
func (w *Watcher) deviceHealthLocked(jw *jobWatch, d scheduler.DeviceRef) scheduler.DeviceHealth {
	nodeID, name := d.ID, d.Name
	node, known := w.nodes[nodeID]
	if !known && name != "" {
		if id, ok := w.nodeIDs[name]; ok {
			nodeID, node, known = id, w.nodes[id], true
		}
	}
	if name == "" && known {
		name = node.Name
	}

	var h scheduler.DeviceHealth
	serfPassing := false
	for _, c := range w.nodeChecks[name] {
		cr := checkResult(c)
		if c.CheckID == SerfHealthCheck {
			cr.Name, cr.Layer = SerfHealthCheck, 1
			serfPassing = c.Status == consulapi.HealthPassing
		}
		h.Checks = append(h.Checks, cr)
	}
	h.Online = known && node.Status == "ready" && serfPassing

	if a, ok := pickAlloc(jw.allocs[nodeID], jw.view); ok && nodeID != "" {
		h.Alloc = &scheduler.AllocHealth{ID: a.ID, Status: a.ClientStatus, Restarts: a.Restarts}
		if jw.view.Found {
			h.Alloc.Version = jw.view.Versions[a.JobVersion]
		}
	}

	// The slot's service checks, of the allocation's own instances only:
	// a replaced allocation's instance must not speak for the new one.
	var app []scheduler.CheckResult
	if h.Alloc != nil {
		svcs := make([]string, 0, len(jw.instances))
		for s := range jw.instances {
			svcs = append(svcs, s)
		}
		sort.Strings(svcs)
		for _, s := range svcs {
			for _, in := range jw.instances[s][name] {
				if !instanceOf(in.ServiceID, h.Alloc.ID) {
					continue
				}
				for _, c := range in.Checks {
					app = append(app, checkResult(c))
				}
			}
		}
	}
	sortChecks(app)
	h.Version = versionOf(app)
	h.Metrics = metricsOf(app)

	var agent []scheduler.CheckResult
	for _, s := range w.cfg.AgentServices {
		for _, in := range w.agent[s][name] {
			for _, c := range in.Checks {
				agent = append(agent, checkResult(c))
			}
		}
	}
	sortChecks(agent)
	if h.Version == "" {
		h.Version = versionOf(agent)
	}

	h.Checks = append(append(h.Checks, app...), agent...)
	sortChecks(h.Checks)
	return h
}

func checkResult(c checkInfo) scheduler.CheckResult {
	return scheduler.CheckResult{Name: c.Name, Layer: CheckLayer(c.Name), Status: c.Status, Output: c.Output}
}

func sortChecks(cs []scheduler.CheckResult) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Layer != cs[j].Layer {
			return cs[i].Layer < cs[j].Layer
		}
		return cs[i].Name < cs[j].Name
	})
}

// versionOf is the version the first layer-3 check's output reports.
func versionOf(cs []scheduler.CheckResult) string {
	for _, c := range cs {
		if c.Layer != 3 {
			continue
		}
		if _, v, ok := ParseCheckOutput(c.Output); ok && v != "" {
			return v
		}
	}
	return ""
}

// metricsOf reads the device agent's measurements from the metrics line of
// its layer-3 check output: no device is polled for them.
func metricsOf(cs []scheduler.CheckResult) *scheduler.Metrics {
	for _, c := range cs {
		if c.Layer != 3 {
			continue
		}
		if m := ParseMetrics(c.Output); m != nil {
			return m
		}
	}
	return nil
}

// MetricsLinePrefix starts the last line of the device agent's layer-3
// check output (agent.Metrics.MetricsLine writes it).
const MetricsLinePrefix = "metrics: "

// ParseMetrics reads the metrics line of a check output; nil when there is
// none or the application could not be measured.
func ParseMetrics(output string) *scheduler.Metrics {
	i := strings.LastIndex(output, "\n"+MetricsLinePrefix)
	switch {
	case i >= 0:
		i++
	case strings.HasPrefix(output, MetricsLinePrefix):
		i = 0
	default:
		return nil
	}
	line := output[i+len(MetricsLinePrefix):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	var m struct {
		ErrorRate    *float64 `json:"error_rate"`
		P95LatencyMS *float64 `json:"p95_latency_ms"`
		RSSMB        *float64 `json:"rss_mb"`
		CPUPercent   *float64 `json:"cpu_percent"`
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return nil
	}
	if m.ErrorRate == nil && m.P95LatencyMS == nil && m.RSSMB == nil {
		return nil
	}
	out := &scheduler.Metrics{}
	if m.ErrorRate != nil {
		out.ErrorRate = *m.ErrorRate
	}
	if m.P95LatencyMS != nil {
		out.P95LatencyMS = *m.P95LatencyMS
	}
	if m.RSSMB != nil {
		out.MemoryMB = *m.RSSMB
	}
	if m.CPUPercent != nil {
		out.CPUPercent = *m.CPUPercent
	}
	return out
}

// Baseline reports the active slot's measurements on each device (the
// pre-switch baseline), from the same caches: it implements
// scheduler.BaselineSource.
func (w *Watcher) Baseline(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]*scheduler.Metrics, error) {
	if r == nil || r.Active == "" {
		return map[string]*scheduler.Metrics{}, nil
	}
	active := *r
	active.Candidate = r.Active
	hs, err := w.Health(ctx, &active, devices)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*scheduler.Metrics, len(hs))
	for id, h := range hs {
		if h.Metrics != nil {
			out[id] = h.Metrics
		}
	}
	return out, nil
}

// instanceOf reports whether a Consul service instance belongs to the
// allocation. Nomad names its registrations _nomad-task-<alloc ID>-...;
// other registrations are taken as they are.
func instanceOf(serviceID, allocID string) bool {
	if !strings.HasPrefix(serviceID, "_nomad-task-") {
		return true
	}
	return strings.Contains(serviceID, allocID)
}

// fetches is the number of calls every loop made so far.
func (w *Watcher) fetches() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n uint64
	for _, l := range w.global {
		n += l.fetchCount()
	}
	for _, jw := range w.jobs {
		for _, l := range jw.loops {
			n += l.fetchCount()
		}
		for _, l := range jw.services {
			n += l.fetchCount()
		}
	}
	return n
}
