package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/plugin"
)

// Defaults of Config.
const (
	DefaultCheckInterval = 5 * time.Second
	DefaultCheckTimeout  = 3 * time.Second
	DefaultCPUWindow     = 15 * time.Second
	DefaultResync        = 30 * time.Second
	// stopTimeout bounds the deregistration of the checks at stop.
	stopTimeout = 5 * time.Second
	// kvWait is how long the first reconciliation waits for the
	// application configs before it registers checks without them.
	kvWait = 10 * time.Second
)

// Config configures an Agent. Zero values take the defaults.
type Config struct {
	// Addr is the address the probe endpoints listen on (host:port).
	Addr string
	// AdvertiseAddr is the address the Consul checks call; default Addr
	// (with 127.0.0.1 for an unspecified host, and the listener's port
	// when Addr's is 0).
	AdvertiseAddr string
	// Node is the device's Consul node name; default the local Consul
	// agent's.
	Node string
	// KVPrefix is the Consul KV folder of the application configs.
	KVPrefix string
	// NomadAddr is the Nomad client's address, for outputs.
	NomadAddr string
	// CheckInterval and CheckTimeout of the node checks, and the interval
	// of the service checks whose policy gives none.
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// DiskPath is the file system whose usage layer 2 measures ("/").
	DiskPath string
	// ProcRoot ("/proc") and SysRoot ("/sys") are read for layer 2.
	ProcRoot string
	SysRoot  string
	// CPUWindow is the span CPU usage is averaged over.
	CPUWindow time.Duration
	// Resync is the interval of a full reconciliation of the checks even
	// when nothing was seen to change (a Consul agent that lost its state).
	Resync time.Duration
	Timing Timing
	// Defaults are the layer 2 limits where no policy sets one (zero:
	// DefaultThresholds; see ParseThresholds).
	Defaults Thresholds
	// Apps limits the per-instance checks to these applications (empty:
	// every fleetplan-managed application).
	Apps []string
	// NewProbe makes functional probe plugins (plugin.NewProbe).
	NewProbe ProbeFactory
	Logger   hclog.Logger
}

func (c *Config) defaults() {
	if c.KVPrefix == "" {
		c.KVPrefix = DefaultKVPrefix
	}
	c.KVPrefix = strings.TrimSuffix(c.KVPrefix, "/")
	if c.CheckInterval <= 0 {
		c.CheckInterval = DefaultCheckInterval
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if c.DiskPath == "" {
		c.DiskPath = "/"
	}
	if c.ProcRoot == "" {
		c.ProcRoot = "/proc"
	}
	if c.SysRoot == "" {
		c.SysRoot = "/sys"
	}
	if c.CPUWindow <= 0 {
		c.CPUWindow = DefaultCPUWindow
	}
	if c.Resync <= 0 {
		c.Resync = DefaultResync
	}
	if c.Timing == (Timing{}) {
		c.Timing = DefaultTiming
	}
	if c.Defaults == (Thresholds{}) {
		c.Defaults = DefaultThresholds
	}
	if c.NewProbe == nil {
		c.NewProbe = plugin.NewProbe
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
}

// Agent is the fleetplan device agent: it serves the probe endpoints and
// keeps its checks registered in the device's Consul agent.
//
// Its life, drawn as a state machine:
//
//	Starting --listening, node name known--> Waiting for configs
//	Waiting for configs --first KV answer (or 10 s)--> Reconciling
//	Reconciling --checks match the instances--> Following
//	Following --catalog node or KV changed, resync timer--> Reconciling
//	Reconciling --Consul error--> Backing off --timer--> Reconciling
//	any --ctx cancelled (SIGINT/SIGTERM)--> Stopping: deregister every
//	    fleetplan-L* check, close the listener
//
// The probe endpoints answer from the first reconciliation on; before it
// they wait (within the caller's timeout).
type Agent struct {
	cfg    Config
	consul *consulapi.Client
	nomad  *nomadapi.Client
	log    hclog.Logger
	now    func() time.Time

	sys *systemSampler
	app *appProber
	fn  *functionalProbes

	trigger   chan struct{}
	ready     chan struct{}
	readyOnce sync.Once
	kvReady   chan struct{}
	kvOnce    sync.Once

	mu        sync.RWMutex
	node      string
	base      string
	configs   map[string]*AppConfig
	instances map[string]Instance

	// Owned by the reconciling goroutine (and Run, once it has ended).
	registered map[string]string // check ID -> fingerprint
	appCache   map[string]string // allocation ID -> application
}

// New builds an agent on the device's Consul agent and Nomad client.
func New(cfg Config, consul *consulapi.Client, nomad *nomadapi.Client) (*Agent, error) {
	if consul == nil || nomad == nil {
		return nil, errors.New("the agent needs a Consul and a Nomad client")
	}
	if cfg.Addr == "" {
		return nil, errors.New("the agent needs an address to listen on")
	}
	cfg.defaults()
	a := &Agent{
		cfg:        cfg,
		consul:     consul,
		nomad:      nomad,
		log:        cfg.Logger.Named("agent"),
		now:        time.Now,
		app:        &appProber{client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}, now: time.Now},
		fn:         newFunctionalProbes(cfg.NewProbe),
		trigger:    make(chan struct{}, 1),
		ready:      make(chan struct{}),
		kvReady:    make(chan struct{}),
		configs:    map[string]*AppConfig{},
		instances:  map[string]Instance{},
		registered: map[string]string{},
		appCache:   map[string]string{},
	}
	a.sys = newSystemSampler(cfg.ProcRoot, cfg.SysRoot, cfg.DiskPath, cfg.CPUWindow, a.now)
	return a, nil
}

// Run serves and registers until ctx ends, then deregisters the agent's
// checks and returns. It returns an error only when it cannot start
// (the address is taken).
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("agent: listening on %s: %w", a.cfg.Addr, err)
	}
	a.mu.Lock()
	a.base = "http://" + advertise(a.cfg.AdvertiseAddr, ln.Addr())
	a.mu.Unlock()
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	a.log.Info("serving probes", "addr", ln.Addr().String(), "advertise", a.base)

	// The first CPU reading, so that the first probe has a delta.
	a.sys.Sample()

	var wg sync.WaitGroup
	if err := a.resolveNode(ctx); err == nil {
		log := a.log.With("node", a.nodeName())
		wg.Add(3)
		go func() {
			defer wg.Done()
			follow(ctx, log.Named("kv"), a.cfg.Timing, a.fetchConfigs, a.poke)
		}()
		go func() {
			defer wg.Done()
			follow(ctx, log.Named("catalog"), a.cfg.Timing, a.fetchCatalog, a.poke)
		}()
		go func() {
			defer wg.Done()
			a.reconcileLoop(ctx)
		}()
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		a.log.Error("probe server stopped", "error", err)
	}
	wg.Wait()
	a.deregisterAll()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
	defer cancel()
	_ = srv.Shutdown(sctx)
	a.log.Info("stopped")
	return nil
}

// advertise is the host:port Consul calls: the configured one, else the
// listener's with a loopback host for an unspecified one.
func advertise(configured string, l net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(l.String())
	if err != nil {
		return l.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// resolveNode learns the Consul node name, retrying until Consul answers.
func (a *Agent) resolveNode(ctx context.Context) error {
	if a.cfg.Node != "" {
		a.setNode(a.cfg.Node)
		return nil
	}
	for failures := 1; ; failures++ {
		name, err := a.consul.Agent().NodeName()
		if err == nil && name != "" {
			a.setNode(name)
			return nil
		}
		d := backoff(failures, a.cfg.Timing.BackoffBase, a.cfg.Timing.BackoffMax)
		a.log.Warn("cannot learn the node name from the local Consul agent", "error", err, "retry_in", d)
		if sleepCtx(ctx, d) != nil {
			return ctx.Err()
		}
	}
}

func (a *Agent) setNode(n string) {
	a.mu.Lock()
	a.node = n
	a.mu.Unlock()
}

func (a *Agent) nodeName() string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.node
}

// poke asks for a reconciliation (coalesced).
func (a *Agent) poke() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// fetchConfigs is the KV folder's blocking query.
func (a *Agent) fetchConfigs(ctx context.Context, waitIndex uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: waitIndex, WaitTime: a.cfg.Timing.WaitTime}).WithContext(ctx)
	pairs, meta, err := a.consul.KV().List(a.cfg.KVPrefix+"/", q)
	if err != nil {
		return 0, fmt.Errorf("reading Consul KV %s/: %w", a.cfg.KVPrefix, err)
	}
	configs, errs := decodeAppConfigs(a.cfg.KVPrefix, pairs)
	for _, e := range errs {
		a.log.Warn("ignoring an application config", "error", e)
	}
	a.mu.Lock()
	a.configs = configs
	a.mu.Unlock()
	a.kvOnce.Do(func() { close(a.kvReady) })
	return meta.LastIndex, nil
}

// fetchCatalog is the blocking query on this node's catalog entry: it
// returns when a service is registered or deregistered here.
func (a *Agent) fetchCatalog(ctx context.Context, waitIndex uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: waitIndex, WaitTime: a.cfg.Timing.WaitTime}).WithContext(ctx)
	_, meta, err := a.consul.Catalog().Node(a.nodeName(), q)
	if err != nil {
		return 0, fmt.Errorf("reading catalog node %s: %w", a.nodeName(), err)
	}
	return meta.LastIndex, nil
}

// reconcileLoop reconciles on every poke and resync, backing off after
// failures.
func (a *Agent) reconcileLoop(ctx context.Context) {
	select {
	case <-a.kvReady:
	case <-time.After(kvWait):
		a.log.Warn("no application configs from Consul KV yet; registering checks with defaults", "prefix", a.cfg.KVPrefix)
	case <-ctx.Done():
		return
	}
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	retry := time.NewTimer(0) // the first reconciliation
	defer retry.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.trigger:
		case <-resync.C:
		case <-retry.C:
		}
		if err := a.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := backoff(failures, a.cfg.Timing.BackoffBase, a.cfg.Timing.BackoffMax)
			a.log.Warn("reconciling checks failed", "error", err, "failures", failures, "retry_in", d)
			retry.Reset(d)
			continue
		}
		if failures > 0 {
			a.log.Info("reconciling checks recovered", "failures", failures)
			failures = 0
		}
	}
}

// reconcile makes the Consul agent's fleetplan-L* checks match the node
// and the fleetplan-managed instances on it.
func (a *Agent) reconcile(ctx context.Context) error {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	services, err := a.consul.Agent().ServicesWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("listing the local Consul agent's services: %w", err)
	}
	checks, err := a.consul.Agent().ChecksWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("listing the local Consul agent's checks: %w", err)
	}
	all := FindInstances(services, checks, func(s *consulapi.AgentService) string { return a.appOf(ctx, s) })
	insts := slices.DeleteFunc(slices.Clone(all), func(in Instance) bool { return !a.inScope(in.App) })
	// With -app, the checks of other applications' instances are not this
	// agent's to remove.
	foreign := map[string]bool{}
	for _, in := range all {
		if !a.inScope(in.App) {
			foreign[in.ServiceID] = true
		}
	}

	a.mu.Lock()
	configs := a.configs
	a.instances = map[string]Instance{}
	for _, in := range insts {
		a.instances[in.ServiceID] = in
	}
	base := a.base
	a.mu.Unlock()
	a.fn.forget(func(id string) bool { _, ok := services[id]; return ok })

	relevant := relevantApps(insts, configs)
	plan := checkPlan{
		Base:             base,
		Interval:         a.cfg.CheckInterval,
		Timeout:          a.cfg.CheckTimeout,
		Thresholds:       strictestThresholds(relevant, a.cfg.Defaults),
		HeartbeatTimeout: StrictestHeartbeatTimeout(relevant),
	}
	want := plan.DesiredChecks(insts, configs)

	var errs []error
	for _, id := range slices.Sorted(maps.Keys(want)) {
		reg := want[id]
		fp := fingerprint(reg)
		cur, exists := checks[id]
		if exists && a.registered[id] == fp {
			continue
		}
		if exists {
			// Keep the current state across a definition change.
			reg.Status = cur.Status
		}
		if err := a.consul.Agent().CheckRegisterOpts(reg, q); err != nil {
			errs = append(errs, fmt.Errorf("registering check %s: %w", id, err))
			continue
		}
		a.registered[id] = fp
		a.log.Info("registered check", "check", reg.Name, "id", id, "service", reg.ServiceID, "url", reg.HTTP)
	}
	for id, c := range checks {
		if !strings.HasPrefix(id, CheckIDPrefix) || want[id] != nil || foreign[c.ServiceID] {
			continue
		}
		if err := a.consul.Agent().CheckDeregisterOpts(id, q); err != nil {
			errs = append(errs, fmt.Errorf("deregistering check %s: %w", id, err))
			continue
		}
		delete(a.registered, id)
		a.log.Info("deregistered check", "check", c.Name, "id", id, "service", c.ServiceID)
	}
	for id := range a.registered {
		if want[id] == nil {
			delete(a.registered, id)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	a.readyOnce.Do(func() { close(a.ready) })
	return nil
}

// inScope reports whether the agent registers checks for the application's
// instances (Config.Apps).
func (a *Agent) inScope(app string) bool {
	return len(a.cfg.Apps) == 0 || slices.Contains(a.cfg.Apps, app)
}

// relevantApps are the configs of the applications with an instance on the
// device, or every config when none has one (a device before its first
// install is judged by the fleet's policies).
func relevantApps(insts []Instance, configs map[string]*AppConfig) []*AppConfig {
	var out []*AppConfig
	seen := map[string]bool{}
	for _, in := range insts {
		if c := configs[in.App]; c != nil && !seen[in.App] {
			seen[in.App] = true
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return sortedApps(configs)
	}
	return out
}

// appOf names the application of an instance: the service meta
// fleetplan_app, else the job meta fleetplan_app of the allocation that
// registered it (asked once per allocation), else the service name.
func (a *Agent) appOf(ctx context.Context, s *consulapi.AgentService) string {
	if app := s.Meta[metaApp]; app != "" {
		return app
	}
	alloc := allocIDOf(s.ID)
	if alloc == "" {
		return s.Service
	}
	if app, ok := a.appCache[alloc]; ok {
		return app
	}
	al, _, err := a.nomad.Allocations().Info(alloc, (&nomadapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		a.log.Warn("cannot read the allocation of a service; using the service name as the application", "service", s.ID, "error", err)
		return s.Service
	}
	app := s.Service
	if al.Job != nil && al.Job.Meta[metaApp] != "" {
		app = al.Job.Meta[metaApp]
	}
	a.appCache[alloc] = app
	if len(a.appCache) > 256 {
		clear(a.appCache)
		a.appCache[alloc] = app
	}
	return app
}

// deregisterAll removes every check the agent owns from the Consul agent.
func (a *Agent) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	checks, err := a.consul.Agent().ChecksWithFilterOpts("", q)
	ids := slices.Collect(maps.Keys(a.registered))
	if err != nil {
		a.log.Warn("cannot list the checks at stop; deregistering the ones this agent registered", "error", err)
	} else if len(a.cfg.Apps) == 0 {
		// Also the checks of an earlier run of this agent.
		for id := range checks {
			if strings.HasPrefix(id, CheckIDPrefix) && !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	for _, id := range ids {
		if err := a.consul.Agent().CheckDeregisterOpts(id, q); err != nil {
			a.log.Warn("deregistering check at stop", "id", id, "error", err)
			continue
		}
		a.log.Debug("deregistered check at stop", "id", id)
	}
	clear(a.registered)
}

// Handler serves the probe endpoints.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathConnectivity, a.handleConnectivity)
	mux.HandleFunc("GET "+PathSystem, a.handleSystem)
	mux.HandleFunc("GET "+PathApplication, a.handleApplication)
	mux.HandleFunc("GET "+PathFunctional, a.handleFunctional)
	mux.HandleFunc("GET "+PathMetrics, a.handleMetrics)
	mux.HandleFunc("GET "+PathStatus, a.handleStatus)
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	return mux
}

// probeCtx bounds a probe a little under the Consul check's timeout, so
// that the probe's own words, not Consul's timeout, reach the output.
func (a *Agent) probeCtx(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	d := timeout - timeout/5
	if d < 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	return context.WithTimeout(r.Context(), d)
}

// waitReady holds a probe until the first reconciliation.
func (a *Agent) waitReady(w http.ResponseWriter, r *http.Request) bool {
	select {
	case <-a.ready:
		return true
	case <-r.Context().Done():
		return false
	case <-time.After(a.cfg.CheckTimeout):
		writeText(w, http.StatusServiceUnavailable, "critical: the fleetplan agent is starting and has not read its device's services yet\n")
		return false
	}
}

func (a *Agent) snapshot() (map[string]*AppConfig, map[string]Instance) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.configs, a.instances
}

func (a *Agent) handleConnectivity(w http.ResponseWriter, r *http.Request) {
	configs, insts := a.snapshot()
	hb := StrictestHeartbeatTimeout(relevantApps(slices.Collect(maps.Values(insts)), configs))
	ctx, cancel := a.probeCtx(r, a.cfg.CheckTimeout)
	defer cancel()
	st := readNomadClient(ctx, a.nomad, a.now)
	status, out := ConnectivityVerdict(st, a.cfg.NomadAddr, hb)
	writeText(w, HTTPStatus(status), out)
}

func (a *Agent) handleSystem(w http.ResponseWriter, _ *http.Request) {
	configs, insts := a.snapshot()
	t := strictestThresholds(relevantApps(slices.Collect(maps.Values(insts)), configs), a.cfg.Defaults)
	status, out := SystemVerdict(a.sys.Sample(), t)
	writeText(w, HTTPStatus(status), out)
}

// instanceFor finds the instance of a probe request, or answers 503.
func (a *Agent) instanceFor(w http.ResponseWriter, r *http.Request) (Instance, *AppConfig, bool) {
	if !a.waitReady(w, r) {
		return Instance{}, nil, false
	}
	id := r.URL.Query().Get("service")
	configs, insts := a.snapshot()
	in, ok := insts[id]
	if !ok {
		writeText(w, http.StatusServiceUnavailable, oneLine(fmt.Sprintf("critical: no fleetplan-managed service instance %q on node %s (the agent removes this check)", id, a.nodeName()))+"\n")
		return Instance{}, nil, false
	}
	return in, configs[in.App], true
}

func (a *Agent) handleApplication(w http.ResponseWriter, r *http.Request) {
	in, cfg, ok := a.instanceFor(w, r)
	if !ok {
		return
	}
	input := ApplicationInput{Instance: in, HealthPath: DefaultHealthPath, MetricsPath: DefaultMetricsPath, ExpectVersion: true}
	fetch := DefaultFetchTimeout
	if cfg != nil {
		input.HealthPath, input.ExpectVersion = cfg.HealthPath, cfg.ExpectVersion
		if cfg.Timeout > 0 {
			fetch = cfg.Timeout.D()
		}
	}
	input.System = a.sys.Sample()
	ctx, cancel := a.probeCtx(r, applicationCheckTimeout(fetch))
	defer cancel()
	status, out := a.app.ProbeApplication(ctx, input, fetch)
	writeText(w, HTTPStatus(status), out)
}

func (a *Agent) handleFunctional(w http.ResponseWriter, r *http.Request) {
	in, cfg, ok := a.instanceFor(w, r)
	if !ok {
		return
	}
	if cfg == nil || cfg.Functional == nil || cfg.Functional.Probe == "" {
		writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("critical: application %s has no functional block (the agent removes this check)\n", in.App))
		return
	}
	ctx, cancel := a.probeCtx(r, probeTimeout(cfg.Functional)+time.Second)
	defer cancel()
	status, out := a.fn.ProbeFunctional(ctx, in, a.nodeName(), cfg.Functional)
	writeText(w, HTTPStatus(status), out)
}

// MetricsReport is what /v1/metrics answers: the device, and the instance
// when ?service= names one.
type MetricsReport struct {
	Node          string    `json:"node"`
	Time          time.Time `json:"time"`
	CPUPercent    *float64  `json:"cpu_percent"`
	MemoryPercent *float64  `json:"memory_percent"`
	DiskPercent   *float64  `json:"disk_percent"`
	TemperatureC  *float64  `json:"temperature_c"`
	Service       string    `json:"service,omitempty"`
	App           string    `json:"app,omitempty"`
	Version       string    `json:"version,omitempty"`
	// Instance holds the metrics line's fields of the instance.
	Instance *Metrics `json:"instance,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s := a.sys.Sample()
	rep := MetricsReport{Node: a.nodeName(), Time: s.Time.UTC()}
	if s.CPUKnown {
		rep.CPUPercent = ptr(round1(s.CPUPercent))
	}
	if s.MemTotalKB > 0 {
		rep.MemoryPercent = ptr(round1(s.MemoryPercent))
	}
	if !hasError(s.Errors, "disk:") {
		rep.DiskPercent = ptr(round1(s.DiskPercent))
	}
	if s.TempKnown {
		rep.TemperatureC = ptr(round1(s.TemperatureC))
	}
	if id := r.URL.Query().Get("service"); id != "" {
		_, insts := a.snapshot()
		in, ok := insts[id]
		if !ok {
			rep.Error = fmt.Sprintf("no fleetplan-managed service instance %q on this device", id)
		} else {
			rep.Service, rep.App, rep.Version = in.ServiceID, in.App, in.Version
			ctx, cancel := context.WithTimeout(r.Context(), DefaultFetchTimeout)
			defer cancel()
			m := Metrics{CPUPercent: rep.CPUPercent, MemoryPercent: rep.MemoryPercent}
			if err := a.app.fillAppMetrics(ctx, "http://"+in.HostPort()+DefaultMetricsPath, &m); err != nil {
				rep.Error = err.Error()
			}
			rep.Instance = &m
		}
	}
	writeJSONBody(w, http.StatusOK, rep)
}

// Status is what /v1/status answers.
type Status struct {
	Node      string                `json:"node"`
	Advertise string                `json:"advertise"`
	Instances []Instance            `json:"instances"`
	Apps      map[string]*AppConfig `json:"apps"`
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	configs, insts := a.snapshot()
	a.mu.RLock()
	st := Status{Node: a.node, Advertise: a.base, Apps: configs}
	a.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(insts)) {
		st.Instances = append(st.Instances, insts[id])
	}
	writeJSONBody(w, http.StatusOK, st)
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func writeJSONBody(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
