// Command nodesim simulates edge devices against the fleetplan dev
// cluster's real Nomad and Consul servers, the way HashiCorp's
// nomad-nodesim does: N in-process Nomad 1.6.1 clients that register and
// heartbeat for real (their allocations are simulated: nothing runs), each
// with a Consul LAN gossip member (so the Consul leader registers the
// device's node with a passing serfHealth check, like a device's Consul
// agent) and the Consul services a running allocation would register, whose
// check statuses the simulator decides (see -bad-version).
//
// It is a separate Go module (it needs the github.com/hashicorp/nomad root
// module, which fleetplan's own go.mod never requires); dev-cluster/scale.sh
// builds and runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/hashicorp/nomad/drivers/mock"
	"github.com/hashicorp/nomad/helper/pluginutils/loader"
	"github.com/hashicorp/nomad/helper/pluginutils/singleton"
	"github.com/hashicorp/serf/serf"
	"github.com/urfave/cli/v2"
)

type simConfig struct {
	devices      int
	prefix       string
	fleet        string
	datacenter   string
	nomadServers []string
	nomadAddr    string
	consulAddr   string
	consulSerf   string
	serfPort     int
	dir          string
	listen       string
	startWorkers int
	badVersions  []string
	badAfter     int
	purge        bool
	maxLag       time.Duration
}

type simulator struct {
	cfg        simConfig
	logger     hclog.Logger
	logOut     io.Writer
	logLevel   hclog.Level
	plugins    loader.PluginCatalog
	singletons loader.PluginCatalog
	services   *services

	mu      sync.Mutex
	devices []*device
	members []string // gossip addresses of the devices that joined
	started atomic.Int64
	failed  atomic.Int64
	// rejoined: devices the Consul server missed, joined again.
	rejoined atomic.Int64
	lag      lagMonitor
	// paused: starts that waited for the simulator's lag to settle.
	paused atomic.Int64
	phase  atomic.Value // string
}

func main() {
	app := &cli.App{
		Name:  "nodesim",
		Usage: "simulate edge devices (Nomad clients + Consul nodes) against the fleetplan dev cluster's servers",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "devices", Aliases: []string{"n"}, Value: 100, Usage: "number of simulated devices"},
			&cli.StringFlag{Name: "prefix", Value: "sim", Usage: "device names are PREFIX-<class>-<n>; node meta nodesim=PREFIX"},
			&cli.StringFlag{Name: "fleet", Value: "sim", Usage: "node meta `fleet` of every device (the dev cluster's own devices are fleet=vision)"},
			&cli.StringFlag{Name: "datacenter", Value: "dc1"},
			&cli.StringSliceFlag{Name: "nomad-server", Value: cli.NewStringSlice("127.0.0.1:4647"), Usage: "Nomad server RPC address"},
			&cli.StringFlag{Name: "nomad-addr", Value: "http://127.0.0.1:4646", Usage: "Nomad HTTP API (to purge the nodes on exit)"},
			&cli.StringFlag{Name: "consul-addr", Value: "127.0.0.1:8500", Usage: "Consul HTTP API (catalog registrations)"},
			&cli.StringFlag{Name: "consul-serf", Value: "127.0.0.1:8301", Usage: "Consul server's LAN gossip address"},
			&cli.IntFlag{Name: "serf-port", Value: 8301, Usage: "gossip port of every device (each has its own 127.x address)"},
			&cli.StringFlag{Name: "dir", Usage: "state folder (per-device client folders, log; required)"},
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:4700", Usage: "status endpoint (GET /status)"},
			&cli.IntFlag{Name: "start-workers", Value: 8, Usage: "devices started at once"},
			&cli.StringSliceFlag{Name: "bad-version", Usage: "a release whose application check goes critical (see -bad-after)"},
			&cli.IntFlag{Name: "bad-after", Value: 0, Usage: "a bad release is healthy on the first N devices that start it, critical on the others"},
			&cli.BoolFlag{Name: "purge", Value: true, Usage: "purge the simulated Nomad nodes on exit"},
			&cli.StringFlag{Name: "log-level", Value: "warn"},
			&cli.DurationFlag{Name: "max-lag", Value: 150 * time.Millisecond, Usage: "start no device while the simulator's goroutines run later than this (its members must answer the Consul server's probes within 500 ms)"},
			&cli.IntFlag{Name: "gogc", Value: 200, Usage: "the Go collector's GOGC (the GOGC environment variable wins)"},
		},
		Action:   run,
		Commands: []*cli.Command{proxyCommand},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "nodesim:", err)
		os.Exit(1)
	}
}

func run(c *cli.Context) error {
	cfg := simConfig{
		devices:      c.Int("devices"),
		prefix:       c.String("prefix"),
		fleet:        c.String("fleet"),
		datacenter:   c.String("datacenter"),
		nomadServers: c.StringSlice("nomad-server"),
		nomadAddr:    c.String("nomad-addr"),
		consulAddr:   c.String("consul-addr"),
		consulSerf:   c.String("consul-serf"),
		serfPort:     c.Int("serf-port"),
		dir:          c.String("dir"),
		listen:       c.String("listen"),
		startWorkers: max(1, c.Int("start-workers")),
		badVersions:  c.StringSlice("bad-version"),
		badAfter:     c.Int("bad-after"),
		purge:        c.Bool("purge"),
		maxLag:       c.Duration("max-lag"),
	}
	if cfg.dir == "" {
		return errors.New("-dir is required: the folder for the devices' client state and the clients' log")
	}
	if cfg.devices < 1 {
		return errors.New("-devices must be at least 1")
	}
	if err := os.MkdirAll(cfg.dir, 0o700); err != nil {
		return fmt.Errorf("creating the state folder %s: %w", cfg.dir, err)
	}
	logf, err := os.OpenFile(cfg.dir+"/clients.log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the clients' log in %s: %w", cfg.dir, err)
	}
	defer logf.Close()
	logger := hclog.New(&hclog.LoggerOptions{Name: "nodesim", Level: hclog.Info, Output: os.Stderr})
	// Memory is plentiful, CPU is not: a thousand devices' gossip and RPCs
	// make garbage fast, and at Go's default (GOGC=100) the collector
	// took most of the simulator's CPU. The live heap per device is
	// measured apart (GET /status?gc=1).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(c.Int("gogc"))
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	plugins, err := loader.NewPluginLoader(&loader.PluginLoaderConfig{
		Logger:            logger.Named("plugins"),
		InternalPlugins:   map[loader.PluginID]*loader.InternalPluginConfig{mock.PluginID: mockDriverPlugin},
		SupportedVersions: loader.AgentSupportedApiVersions,
	})
	if err != nil {
		return fmt.Errorf("loading the mock driver: %w", err)
	}
	ccfg := consulapi.DefaultConfig()
	ccfg.Address = cfg.consulAddr
	ccfg.Transport.MaxIdleConnsPerHost = consulConcurrency
	ccfg.Transport.MaxConnsPerHost = consulConcurrency
	consul, err := consulapi.NewClient(ccfg)
	if err != nil {
		return fmt.Errorf("creating the Consul client for %s: %w", cfg.consulAddr, err)
	}
	bad := map[string]bool{}
	for _, v := range cfg.badVersions {
		bad[v] = true
	}
	// Registrations outlive the signal: they stop when the run is over.
	svcCtx, svcCancel := context.WithCancel(context.Background())
	defer svcCancel()
	s := &simulator{
		cfg:        cfg,
		logger:     logger,
		logOut:     logf,
		logLevel:   hclog.LevelFromString(c.String("log-level")),
		plugins:    plugins,
		singletons: singleton.NewSingletonLoader(logger.Named("plugins"), plugins),
		services: &services{
			consul:  consul,
			dc:      cfg.datacenter,
			health:  &healthPolicy{badVersions: bad, badAfter: cfg.badAfter, started: map[string]map[string]int{}},
			logger:  logger.Named("services"),
			ctx:     svcCtx,
			sem:     make(chan struct{}, consulConcurrency),
			byAlloc: map[string][]string{},
		},
	}
	s.phase.Store("starting")

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return fmt.Errorf("listening on %s for the status endpoint: %w (another nodesim running?)", cfg.listen, err)
	}
	srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	logger.Info("starting devices", "devices", cfg.devices, "prefix", cfg.prefix, "fleet", cfg.fleet, "status", "http://"+cfg.listen+"/status")
	begin := time.Now()
	membersCtx, stopMembers := context.WithCancel(context.Background())
	membersDone := make(chan struct{})
	go func() {
		defer close(membersDone)
		s.ensureMembers(membersCtx, consul, 20*time.Second)
	}()
	go s.lag.run(membersCtx)
	startErr := s.startAll(ctx)
	if startErr != nil {
		logger.Error("starting the devices failed; stopping", "error", startErr)
	} else {
		logger.Info("devices started", "devices", cfg.devices, "took", time.Since(begin).Round(time.Millisecond))
		s.phase.Store("running")
		<-ctx.Done()
	}
	s.phase.Store("stopping")
	stopMembers()
	<-membersDone
	s.stopAll(svcCancel)
	return startErr
}

// joinedPeer is the gossip address of a random device that joined, or "".
func (s *simulator) joinedPeer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.members) == 0 {
		return ""
	}
	return s.members[rand.IntN(len(s.members))]
}

func (s *simulator) joined(d *device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d.joinedAt = time.Now()
	s.members = append(s.members, fmt.Sprintf("%s:%d", d.ip, s.cfg.serfPort))
}

// ensureMembers makes sure the Consul server counts every device that
// joined as an alive member: a device that joined through another device
// reaches the server by gossip, which can miss it (each message reaches a
// member ~6 times on average, not always), and the server's own push-pulls
// with random members are minutes apart at a thousand members. Every
// period, the devices that joined more than a period ago and that the
// server does not list as alive join again, through the server.
func (s *simulator) ensureMembers(ctx context.Context, consul *consulapi.Client, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		members, err := consul.Agent().Members(false)
		if err != nil {
			s.logger.Warn("listing the Consul server's members (to find devices it missed)", "consul", s.cfg.consulAddr, "error", err)
			continue
		}
		alive := make(map[string]bool, len(members))
		for _, m := range members {
			alive[m.Name] = m.Status == int(serf.StatusAlive)
		}
		var missing []*device
		s.mu.Lock()
		for _, d := range s.devices {
			if !d.joinedAt.IsZero() && time.Since(d.joinedAt) > period && !alive[d.name] {
				missing = append(missing, d)
			}
		}
		s.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		s.logger.Info("devices the Consul server does not count as alive: joining them through the server again", "devices", len(missing))
		parallel(missing, 4, func(d *device) {
			if ctx.Err() != nil {
				return
			}
			if _, err := d.serf.Join([]string{s.cfg.consulSerf}, true); err != nil {
				s.logger.Warn("joining the device again through the Consul server", "device", d.name, "error", err)
				return
			}
			s.rejoined.Add(1)
		})
	}
}

// startAll starts the devices, a few at a time.
func (s *simulator) startAll(ctx context.Context) error {
	work := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for w := 0; w < s.cfg.startWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				d := newDevice(s, i)
				s.mu.Lock()
				s.devices = append(s.devices, d)
				s.mu.Unlock()
				err := d.startGossip()
				if err == nil {
					err = d.startNomad()
				}
				if err != nil {
					s.failed.Add(1)
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				s.started.Add(1)
			}
		}()
	}
	for i := 0; i < s.cfg.devices; i++ {
		mu.Lock()
		failed := len(errs) > 0
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		if s.lag.wait(ctx, s.cfg.maxLag) {
			s.paused.Add(1)
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}

// stopAll stops every device (Nomad clients, then the gossip members leave,
// which deregisters their Consul nodes) and purges the Nomad nodes.
func (s *simulator) stopAll(cancelRegistrations context.CancelFunc) {
	s.mu.Lock()
	devs := append([]*device(nil), s.devices...)
	s.mu.Unlock()
	s.logger.Info("stopping devices", "devices", len(devs))
	parallel(devs, 128, func(d *device) { d.stopNomad() })
	// Every member leaves, then they stop together: a member that stopped
	// right after its own leave would drop the others' leaves it was to
	// forward, and the server would count hundreds of stopped devices as
	// alive until its probes (one a second) failed them.
	parallel(devs, 128, func(d *device) { d.leave() })
	s.waitLeft(devs, 90*time.Second)
	parallel(devs, 128, func(d *device) { d.shutdownGossip() })
	cancelRegistrations()
	if !s.cfg.purge {
		return
	}
	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: s.cfg.nomadAddr})
	if err != nil {
		s.logger.Error("cannot purge the simulated nodes", "nomad", s.cfg.nomadAddr, "error", err)
		return
	}
	var purged atomic.Int64
	parallel(devs, 8, func(d *device) {
		if _, _, err := nc.Nodes().Purge(d.id, nil); err != nil {
			if !strings.Contains(err.Error(), "404") && !strings.Contains(err.Error(), "not found") {
				s.logger.Warn("purging the simulated node", "node", d.name, "id", d.id, "error", err)
			}
			return
		}
		purged.Add(1)
	})
	s.logger.Info("simulated nodes purged", "purged", purged.Load())
}

// waitLeft waits (up to patience) until the Consul server counts none of
// the devices as alive or suspect.
func (s *simulator) waitLeft(devs []*device, patience time.Duration) {
	names := make(map[string]bool, len(devs))
	for _, d := range devs {
		names[d.name] = true
	}
	deadline := time.Now().Add(patience)
	for {
		members, err := s.services.consul.Agent().Members(false)
		staying := 0
		if err == nil {
			for _, m := range members {
				if names[m.Name] && (m.Status == int(serf.StatusAlive) || m.Status == int(serf.StatusLeaving)) {
					staying++
				}
			}
		}
		if err == nil && staying == 0 {
			return
		}
		if time.Now().After(deadline) {
			s.logger.Warn("the Consul server still counts devices as members after they left; they fail when its probes find them gone", "devices", staying, "error", err)
			return
		}
		time.Sleep(2 * time.Second)
	}
}

func parallel(devs []*device, n int, f func(*device)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			f(d)
		}()
	}
	wg.Wait()
}

// status is what GET /status answers.
type status struct {
	Phase    string `json:"phase"`
	Devices  int    `json:"devices"`
	Started  int64  `json:"started"`
	Failed   int64  `json:"failed"`
	Rejoined int64  `json:"rejoined"`
	// LagMs: how late the simulator's goroutines run (the worst of the
	// last second); StartsPaused: starts that waited for it to settle.
	LagMs                int64  `json:"lag_ms"`
	StartsPaused         int64  `json:"starts_paused"`
	ServicesRegistered   int64  `json:"services_registered"`
	ServicesDeregistered int64  `json:"services_deregistered"`
	ServicesCritical     int64  `json:"services_critical"`
	ConsulErrors         int64  `json:"consul_errors"`
	Goroutines           int    `json:"goroutines"`
	HeapMB               uint64 `json:"heap_mb"`
	// LiveHeapMB: the heap still reachable right after a collection
	// (GET /status?gc=1 runs one; 0 otherwise).
	LiveHeapMB uint64 `json:"live_heap_mb,omitempty"`
}

func (s *simulator) mux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		var ms runtime.MemStats
		gc := r.URL.Query().Get("gc") == "1"
		if gc {
			runtime.GC()
		}
		runtime.ReadMemStats(&ms)
		st := status{
			Phase:                s.phase.Load().(string),
			Devices:              s.cfg.devices,
			Started:              s.started.Load(),
			Failed:               s.failed.Load(),
			Rejoined:             s.rejoined.Load(),
			LagMs:                s.lag.lagMs.Load(),
			StartsPaused:         s.paused.Load(),
			ServicesRegistered:   s.services.registered.Load(),
			ServicesDeregistered: s.services.deregistered.Load(),
			ServicesCritical:     s.services.critical.Load(),
			ConsulErrors:         s.services.errors.Load(),
			Goroutines:           runtime.NumGoroutine(),
			HeapMB:               ms.HeapInuse >> 20,
		}
		if gc {
			st.LiveHeapMB = ms.HeapAlloc >> 20
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	// Go's profiler (make scale runs the simulator on the same 2 cores as
	// the servers: where its CPU goes is the first question at scale).
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
