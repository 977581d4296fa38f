//go:build integration

package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// countingProxy forwards to one local agent (a device's Consul agent or
// Nomad client) and counts the requests by kind: "local" (answered by the
// local agent itself, /v1/agent/...), "blocking" (a long-poll forwarded to
// the servers: ?index=N), and "server" (any other request the local agent
// forwards to the servers).
type countingProxy struct {
	mu     sync.Mutex
	counts map[string]int
	paths  map[string]int
	on     bool
}

func (p *countingProxy) start(t *testing.T, target string) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.counts, p.paths = map[string]int{}, map[string]int{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind := "server"
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/agent/"):
			kind = "local"
		case r.URL.Query().Get("index") != "" && r.URL.Query().Get("index") != "0":
			kind = "blocking"
		}
		p.mu.Lock()
		if p.on {
			p.counts[kind]++
			p.paths[r.Method+" "+kind+" "+pathClass(r.URL.Path)]++
		}
		p.mu.Unlock()
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// pathClass drops IDs from a path.
func pathClass(p string) string {
	parts := strings.Split(p, "/")
	if len(parts) > 4 {
		parts = parts[:4]
		parts = append(parts, "...")
	}
	return strings.Join(parts, "/")
}

func (p *countingProxy) snapshot() (map[string]int, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, v := range p.counts {
		out[k] = v
	}
	var lines []string
	for k, v := range p.paths {
		lines = append(lines, fmt.Sprintf("%4d %s", v, k))
	}
	sort.Strings(lines)
	return out, lines
}

func (p *countingProxy) setOn(on bool) {
	p.mu.Lock()
	p.on = on
	p.mu.Unlock()
}

// TestIntegrationAgentServerRequests runs one device agent in process
// against a real device's Consul agent and Nomad client, through counting
// proxies, and counts what it asks while nothing changes on the device:
// requests the local agents forward to the servers must be long-polls
// only (no periodic reads). FLEETPLAN_REQUESTS_WINDOW sets the counting
// window (default 60s).
func TestIntegrationAgentServerRequests(t *testing.T) {
	c := testcluster.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	window := time.Minute
	if v := os.Getenv("FLEETPLAN_REQUESTS_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatal(err)
		}
		window = d
	}
	nodes, _, err := c.Nomad.Nodes().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	var node *nomadapi.NodeListStub
	for _, n := range nodes {
		if n.Status == "ready" && slices.Contains(c.Devices, n.Name) && (node == nil || n.Name < node.Name) {
			node = n
		}
	}
	if node == nil {
		t.Fatal("no ready device")
	}
	cn, _, err := c.Consul.Catalog().Node(node.Name, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil || cn == nil || cn.Node == nil {
		t.Fatalf("the Consul node of %s: %v", node.Name, err)
	}
	consulProxy, nomadProxy := &countingProxy{}, &countingProxy{}
	caddr := consulProxy.start(t, "http://"+cn.Node.Address+":8500")
	naddr := nomadProxy.start(t, "http://"+node.Address+":4646")
	ccfg := consulapi.DefaultConfig()
	ccfg.Address = strings.TrimPrefix(caddr, "http://")
	cc, err := consulapi.NewClient(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	ncfg := nomadapi.DefaultConfig()
	ncfg.Address = naddr
	nc, err := nomadapi.NewClient(ncfg)
	if err != nil {
		t.Fatal(err)
	}
	app := fmt.Sprintf("reqtest-%d", time.Now().UnixNano()%1_000_000)
	a, err := agent.New(agent.Config{
		Addr: "127.0.0.1:0", Node: node.Name, NomadAddr: naddr, KVPrefix: "fleetplan-test/" + app + "/agent/apps",
		Apps: []string{app}, Defaults: agent.Thresholds{CPUPercent: -1, MemoryPercent: -1, DiskPercent: -1, TemperatureC: -1},
		Logger: hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: os.Stderr}),
	}, cc, nc)
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(actx) }()
	defer func() { acancel(); <-done }()

	// Warm up: the checks registered and called by Consul a few times.
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		hc, _, err := c.Consul.Health().Node(node.Name, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return false, err.Error()
		}
		for _, h := range hc {
			if h.CheckID == agent.CheckIDConnectivity && h.Status == consulapi.HealthPassing {
				return true, ""
			}
		}
		return false, "no passing connectivity check yet"
	})
	time.Sleep(10 * time.Second) // let the first long-polls settle; no condition to wait for
	consulProxy.setOn(true)
	nomadProxy.setOn(true)
	start := time.Now()
	select {
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	case <-time.After(window):
	}
	elapsed := time.Since(start)
	cs, clines := consulProxy.snapshot()
	ns, nlines := nomadProxy.snapshot()
	perMin := func(n int) float64 { return float64(n) / elapsed.Minutes() }
	t.Logf("over %s on %s:", elapsed.Round(time.Second), node.Name)
	t.Logf("  Consul: server %d (%.1f/min), blocking %d (%.1f/min), local %d (%.1f/min)", cs["server"], perMin(cs["server"]), cs["blocking"], perMin(cs["blocking"]), cs["local"], perMin(cs["local"]))
	t.Logf("  Nomad:  server %d (%.1f/min), blocking %d (%.1f/min), local %d (%.1f/min)", ns["server"], perMin(ns["server"]), ns["blocking"], perMin(ns["blocking"]), ns["local"], perMin(ns["local"]))
	for _, l := range clines {
		t.Logf("  consul %s", l)
	}
	for _, l := range nlines {
		t.Logf("  nomad  %s", l)
	}
	assert := os.Getenv("FLEETPLAN_REQUESTS_NO_ASSERT") == ""
	if assert {
		// Nothing changed: no periodic server read; a long-poll returns
		// at most once per wait (5 to 10 min) unless the node or KV
		// changes. Only two reach the servers (KV, the Nomad node): the
		// device's services are followed on the local agent.
		if n := cs["server"] + ns["server"]; n > 0 {
			t.Errorf("%d non-blocking server requests while nothing changed (%.1f/min)", n, perMin(n))
		}
		if n := cs["blocking"] + ns["blocking"]; perMin(n) > 2 {
			t.Errorf("%d long-poll returns in %s: more than the 2 long-polls once per wait", n, elapsed.Round(time.Second))
		}
		for _, l := range clines {
			if strings.Contains(l, "/v1/catalog/") {
				t.Errorf("the agent asked the catalog (the servers): %s", l)
			}
		}
	}
}
