package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
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
	// Token is what a caller of /v1/metrics and /v1/status must present
	// (TokenHeader "Bearer <token>"); "" makes a new random one at New.
	// It is in no check definition: the probe endpoints Consul calls need
	// none (see ProbeMinAge).
	Token string
	// ProbeMinAge is how old a probe endpoint's last answer must be before
	// a request runs the probe again (DefaultProbeMinAge; negative: every
	// request runs it).
	ProbeMinAge time.Duration
	// ExecAllow maps the exec probe's command names to this device's
	// programs (-exec-allow); a name not in it is never run.
	ExecAllow ExecAllowList
	// NewProbe makes functional probe plugins (plugin.NewProbe).
	NewProbe ProbeFactory
	// SummaryPrefix is the Consul KV folder of the device summaries
	// (contract.DefaultSummaryPrefix).
	SummaryPrefix string
	// SummaryJitter bounds the random delay before a summary request is
	// answered (DefaultSummaryJitter; negative: none).
	SummaryJitter time.Duration
	// ServiceName is the Consul service the agent registers itself as on
	// its local Consul agent, for Prometheus' Consul discovery
	// (DefaultServiceName; "-" registers none). Its ID is the name, or,
	// for an agent limited to some applications (Apps), the name followed
	// by them, so that two agents on one device do not share one.
	ServiceName string
	Logger      hclog.Logger
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
	if c.ProbeMinAge == 0 {
		c.ProbeMinAge = DefaultProbeMinAge
	}
	if c.SummaryPrefix == "" {
		c.SummaryPrefix = contract.DefaultSummaryPrefix
	}
	c.SummaryPrefix = strings.TrimSuffix(c.SummaryPrefix, "/")
	if c.SummaryJitter == 0 {
		c.SummaryJitter = DefaultSummaryJitter
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
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
//	Following --local services or KV changed, resync timer--> Reconciling
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

	sys     *systemSampler
	app     *appProber
	probes  *probeCache
	fn      *functionalProbes
	meas    *measurements
	metrics *agentMetrics
	nodeSt  *nodeFollower

	sumPoke     chan struct{}
	sumMu       sync.Mutex
	sumAnswered map[string]string // app -> request answered
	rechecked   map[string]string // app -> re-check answered
	sumChanged  map[string]bool

	// svcHash is the content hash of the local agent's services as last
	// read, svcIndex counts its changes (fetchServices).
	svcMu    sync.Mutex
	svcHash  string
	svcIndex uint64

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
	// service is the fingerprint of the agent's own service registration
	// ("" when not registered by this run).
	service string
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
	if cfg.Token == "" {
		t, err := newToken()
		if err != nil {
			return nil, err
		}
		cfg.Token = t
	}
	a := &Agent{
		cfg:         cfg,
		consul:      consul,
		nomad:       nomad,
		log:         cfg.Logger.Named("agent"),
		now:         time.Now,
		app:         &appProber{client: &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, CheckRedirect: noRedirects}, now: time.Now},
		fn:          newFunctionalProbes(cfg.NewProbe),
		trigger:     make(chan struct{}, 1),
		ready:       make(chan struct{}),
		kvReady:     make(chan struct{}),
		configs:     map[string]*AppConfig{},
		instances:   map[string]Instance{},
		registered:  map[string]string{},
		appCache:    map[string]string{},
		meas:        newMeasurements(),
		metrics:     newAgentMetrics(),
		nodeSt:      &nodeFollower{},
		sumPoke:     make(chan struct{}, 1),
		sumAnswered: map[string]string{},
		rechecked:   map[string]string{},
		sumChanged:  map[string]bool{},
	}
	a.fn.allow = cfg.ExecAllow
	a.probes = newProbeCache(cfg.ProbeMinAge, a.now)
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
		wg.Add(5)
		go func() {
			defer wg.Done()
			follow(ctx, log.Named("kv"), a.cfg.Timing, a.fetchConfigs, func() { a.poke(); a.pokeSummaries() })
		}()
		go func() {
			defer wg.Done()
			a.followNode(ctx, log.Named("nomad-node"))
		}()
		go func() {
			defer wg.Done()
			a.summaryLoop(ctx)
		}()
		go func() {
			defer wg.Done()
			follow(ctx, log.Named("services"), a.cfg.Timing, a.fetchServices, a.poke)
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
		d := blocking.Backoff(failures, a.cfg.Timing.BackoffBase, a.cfg.Timing.BackoffMax)
		a.log.Warn("cannot learn the node name from the local Consul agent", "error", err, "retry_in", d)
		if blocking.Sleep(ctx, d) != nil {
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
