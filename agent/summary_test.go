package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
)

// fakeConsul records the KV writes and service registrations it gets.
type fakeConsul struct {
	mu       sync.Mutex
	kv       map[string][]string // key -> values written, in order
	services []consulapi.AgentServiceRegistration
}

func (f *fakeConsul) start(t *testing.T) *consulapi.Client {
	t.Helper()
	f.kv = map[string][]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		defer f.mu.Unlock()
		switch {
		case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/kv/"):
			k := strings.TrimPrefix(r.URL.Path, "/v1/kv/")
			f.kv[k] = append(f.kv[k], string(b))
			_, _ = io.WriteString(w, "true")
		case r.Method == http.MethodPut && r.URL.Path == "/v1/agent/service/register":
			var s consulapi.AgentServiceRegistration
			_ = json.Unmarshal(b, &s)
			f.services = append(f.services, s)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	c, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fakeConsul) writes(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.kv[key]...)
}

// promApp serves a Prometheus page whose counters grow by 100 requests per
// scrape, errPerScrape of them errors.
type promApp struct {
	scrapes      atomic.Int64
	errPerScrape atomic.Int64
	errors       atomic.Int64
}

func (p *promApp) start(t *testing.T) Instance {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, fmt.Sprintf(`{"status":"healthy","version":"2.0.0","uptime_seconds":%d}`, p.scrapes.Load()))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		n := p.scrapes.Add(1)
		e := p.errors.Add(p.errPerScrape.Load())
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# TYPE http_requests_total counter\nhttp_requests_total{handler=\"/infer\",code=\"200\"} %d\nhttp_requests_total{handler=\"/infer\",code=\"500\"} %d\n", n*100-e, e)
		fmt.Fprintf(w, "# TYPE http_request_duration_seconds histogram\nhttp_request_duration_seconds_bucket{handler=\"/infer\",le=\"0.05\"} %d\nhttp_request_duration_seconds_bucket{handler=\"/infer\",le=\"+Inf\"} %d\nhttp_request_duration_seconds_sum{handler=\"/infer\"} 1\nhttp_request_duration_seconds_count{handler=\"/infer\"} %d\n", n*100, n*100, n*100)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	pn, _ := strconv.Atoi(port)
	return Instance{ServiceID: "_nomad-task-0b0c0d0e-1111-2222-3333-444455556666-group-edgeinfer-http", Service: "edgeinfer", App: "edgeinfer",
		Address: host, Port: pn, Slot: "green", Version: "2.0.0"}
}

// summaryTestAgent is an agent on node rpi-1 with the fixtures' /proc and
// /sys, writing summaries at once to a fake Consul.
func summaryTestAgent(t *testing.T) (*Agent, *fakeConsul) {
	t.Helper()
	fc := &fakeConsul{}
	cc := fc.start(t)
	nc, _ := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	a, err := New(Config{
		Addr: "127.0.0.1:0", CheckTimeout: time.Second, ProbeMinAge: -1, SummaryJitter: -1,
		ProcRoot: filepath.Join("testdata", "proc"), SysRoot: filepath.Join("testdata", "sys"), DiskPath: t.TempDir(), Token: testToken,
	}, cc, nc)
	if err != nil {
		t.Fatal(err)
	}
	a.setNode("rpi-1")
	return a, fc
}

// TestEdgeVerdictAndSummary runs the layer 3 probe against an application
// that serves only Prometheus metrics: its error rate over the trigger
// makes the check critical with a reason, the output stays the same while
// the verdict does (the numbers move), and the agent writes its summary
// once per request and on the status change.
func TestEdgeVerdictAndSummary(t *testing.T) {
	a, fc := summaryTestAgent(t)
	app := &promApp{}
	inst := app.start(t)
	mc := testMapping
	cfg := &AppConfig{App: "edgeinfer", HealthPath: "/health", ExpectVersion: true, Metrics: &mc, MaxErrorRate: 0.05, SummaryRequest: "req-1"}
	a.mu.Lock()
	a.instances = map[string]Instance{inst.ServiceID: inst}
	a.configs = map[string]*AppConfig{"edgeinfer": cfg}
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.summaryLoop(ctx)
	h := a.Handler()
	probe := PathApplication + "?service=" + inst.ServiceID

	// First scrape: no rate yet, "not measured" warns.
	code, body := get(t, h, probe)
	if code != 429 || !strings.HasPrefix(body, "warning: error rate not measured (max_error_rate 0.05): waiting for a second scrape; healthy; version 2.0.0 as released") {
		t.Errorf("first probe: %d\n%s", code, body)
	}
	// 8 errors in 100 requests.
	app.errPerScrape.Store(8)
	code, body = get(t, h, probe)
	if code != 503 || !strings.HasPrefix(body, "critical: error rate 0.080 > max_error_rate 0.05 (rollback trigger); healthy; version 2.0.0 as released") {
		t.Errorf("8%% errors: %d\n%s", code, body)
	}
	if strings.Contains(body, "metrics: ") {
		t.Errorf("the output streams the numbers:\n%s", body)
	}
	// More errors, same verdict: the same output.
	app.errPerScrape.Store(20)
	code2, body2 := get(t, h, probe)
	if code2 != 503 || body2 != body {
		t.Errorf("the output changed while the verdict did not:\n%s\n%s", body, body2)
	}

	key := contract.SummaryKey("", "edgeinfer", "rpi-1")
	var s contract.Summary
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found bool
		for _, v := range fc.writes(key) {
			if d, err := contract.DecodeSummary([]byte(v)); err == nil && d.Request == "req-1" {
				s, found = d, true
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary answering req-1 at %s: %q", key, fc.writes(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.App != "edgeinfer" || s.Node != "rpi-1" || s.Version != "2.0.0" || s.Slot != "green" || s.AllocID != "0b0c0d0e-1111-2222-3333-444455556666" {
		t.Errorf("summary identity: %+v", s)
	}
	if s.Window == nil || s.Window.Samples < 1 {
		t.Errorf("summary window: %+v", s.Window)
	}
	if l := s.Layers[contract.LayerApplication]; l.Status == "" {
		t.Errorf("summary layers: %+v", s.Layers)
	}
	// One answer per request: later status changes write without it.
	count := func() int {
		n := 0
		for _, v := range fc.writes(key) {
			if d, _ := contract.DecodeSummary([]byte(v)); d.Request == "req-1" {
				n++
			}
		}
		return n
	}
	app.errPerScrape.Store(0)
	for range 8 {
		get(t, h, probe) // the error rate falls back under the trigger: passing
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		ws := fc.writes(key)
		last, _ := contract.DecodeSummary([]byte(ws[len(ws)-1]))
		if last.Layers[contract.LayerApplication].Status == "passing" && last.Request == "" {
			if w := last.Window; w == nil || w.Requests == nil || *w.Requests < 100 || w.Errors == nil || *w.Errors < 8 || w.P95LatencyMS == nil {
				t.Errorf("the window of the last summary: %+v", w)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summary after the status change to passing: %q", ws)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := count(); n != 1 {
		t.Errorf("request req-1 answered %d times", n)
	}
	for _, v := range fc.writes(key) {
		if len(v) > contract.MaxSummaryBytes {
			t.Errorf("summary of %d bytes", len(v))
		}
	}
	t.Logf("summary: %d bytes: %s", len(fc.writes(key)[0]), fc.writes(key)[0])

	// The agent's own metrics count the probes by layer and status.
	code, body = get(t, h, PathPrometheus)
	if code != 200 || !strings.Contains(body, `fleetplan_agent_checks{layer="3",status="passing"} 1`) || !strings.Contains(body, `fleetplan_agent_summary_writes_total{cause="request",result="ok"} 1`) {
		t.Errorf("agent metrics: %d\n%s", code, body)
	}
}

// TestEnsureService registers the agent's service once, and again only
// when the local agent lacks it or holds another definition.
func TestEnsureService(t *testing.T) {
	fc := &fakeConsul{}
	cc := fc.start(t)
	nc, _ := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	a, err := New(Config{Addr: "127.0.0.1:0", Apps: []string{"b", "a"}}, cc, nc)
	if err != nil {
		t.Fatal(err)
	}
	a.base = "http://10.0.0.5:7474"
	a.ensureService(context.Background(), nil)
	fc.mu.Lock()
	got := fc.services
	fc.mu.Unlock()
	if len(got) != 1 || got[0].ID != "fleetplan-agent-a-b" || got[0].Name != "fleetplan-agent" || got[0].Port != 7474 || got[0].Address != "10.0.0.5" ||
		got[0].Meta[ServiceMetaPath] != "/metrics" || got[0].Tags[0] != "prometheus" {
		t.Fatalf("registration: %+v", got)
	}
	cur := map[string]*consulapi.AgentService{"fleetplan-agent-a-b": {ID: got[0].ID, Service: got[0].Name, Tags: got[0].Tags, Address: got[0].Address, Port: got[0].Port, Meta: got[0].Meta}}
	a.ensureService(context.Background(), cur)
	a.base = "http://10.0.0.5:7475"
	a.ensureService(context.Background(), cur)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.services) != 2 || fc.services[1].Port != 7475 {
		t.Errorf("registrations: %+v (want one more, for the new port only)", fc.services)
	}
}
