package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/plugin"
)

// countingProbe counts its runs.
type countingProbe struct{ runs *atomic.Int32 }

func (p countingProbe) PluginInfo() plugin.Info {
	return plugin.Info{Name: "count", Type: plugin.TypeProbe}
}
func (p countingProbe) ConfigSchema() []plugin.Field                       { return nil }
func (p countingProbe) SetConfig(context.Context, map[string]string) error { return nil }
func (p countingProbe) Probe(context.Context, plugin.Target) (plugin.Result, error) {
	p.runs.Add(1)
	return plugin.Result{Status: plugin.StatusPassing, Output: "ran"}, nil
}

// TestProbeEndpointsOpenButBounded (I11): the probe endpoints Consul calls
// need no token (none is in a check definition), and a burst of callers
// runs a probe once per ProbeMinAge; /v1/metrics and /v1/status still need
// the agent's token.
func TestProbeEndpointsOpenButBounded(t *testing.T) {
	var runs atomic.Int32
	a := testAgent(t, Thresholds{})
	a.cfg.NewProbe = func(string) (plugin.Probe, error) { return countingProbe{&runs}, nil }
	a.fn = newFunctionalProbes(a.cfg.NewProbe)
	now := time.Unix(1_700_000_000, 0)
	a.probes = newProbeCache(time.Second, func() time.Time { return now })
	inst := Instance{ServiceID: "svc", App: "edgeinfer", Address: "127.0.0.1", Port: 1}
	a.mu.Lock()
	a.instances = map[string]Instance{inst.ServiceID: inst}
	a.configs = map[string]*AppConfig{"edgeinfer": {App: "edgeinfer", HealthPath: "/health", Functional: &FunctionalConfig{Probe: "count"}}}
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	h := a.Handler()

	for i := 0; i < 20; i++ {
		if code, body := getWith(t, h, PathFunctional+"?service=svc", ""); code != http.StatusOK || !strings.Contains(body, "passing: count ran") {
			t.Fatalf("functional without a token, call %d: %d %s", i, code, body)
		}
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("20 calls within ProbeMinAge ran the probe %d times, want 1", n)
	}
	now = now.Add(time.Second)
	if code, _ := getWith(t, h, PathFunctional+"?service=svc", ""); code != http.StatusOK || runs.Load() != 2 {
		t.Errorf("a call after ProbeMinAge: %d, runs %d, want a second run", code, runs.Load())
	}
	if code, body := getWith(t, h, PathFunctional+"?service=other", ""); code != http.StatusServiceUnavailable || runs.Load() != 2 {
		t.Errorf("an unknown instance: %d %s (runs %d): want 503 and no run", code, body, runs.Load())
	}
	for _, p := range []string{PathConnectivity, PathSystem, PathApplication + "?service=svc"} {
		if code, body := getWith(t, h, p, ""); code == http.StatusUnauthorized {
			t.Errorf("GET %s without a token: 401 %s; Consul calls it without one", p, body)
		}
	}
	for _, p := range []string{PathMetrics, PathStatus} {
		for _, auth := range []string{"", "Bearer wrong", testToken, "Bearer " + testToken + "x", "Basic " + testToken} {
			if code, body := getWith(t, h, p, auth); code != http.StatusUnauthorized || !strings.Contains(body, "missing or wrong token") {
				t.Errorf("GET %s with %q: %d %s", p, auth, code, body)
			}
		}
		if code, _ := get(t, h, p); code != http.StatusOK {
			t.Errorf("GET %s with the token: %d", p, code)
		}
	}
	if code, _ := getWith(t, h, PathHealth, ""); code != http.StatusOK {
		t.Errorf("/v1/health without a token: %d", code)
	}
}

// TestNoSecretInCheckDefinitions: an agent makes its own token (32 random
// bytes in hex) and puts it, or any header, in none of the checks it
// registers; a request as Consul makes it passes.
func TestNoSecretInCheckDefinitions(t *testing.T) {
	cc, _ := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	nc, _ := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	mk := func() *Agent {
		a, err := New(Config{Addr: "127.0.0.1:0"}, cc, nc)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a, b := mk(), mk()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a.cfg.Token) || a.cfg.Token == b.cfg.Token {
		t.Fatalf("tokens %q and %q: want two different 64-hex-digit tokens", a.cfg.Token, b.cfg.Token)
	}
	plan := checkPlan{Base: "http://127.0.0.1:7474", Interval: time.Second, Timeout: time.Second}
	inst := Instance{ServiceID: "svc", App: "edgeinfer", Address: "127.0.0.1", Port: 1}
	cfgs := map[string]*AppConfig{"edgeinfer": {App: "edgeinfer", HealthPath: "/health", Functional: &FunctionalConfig{Probe: "tcp"}}}
	regs := plan.DesiredChecks([]Instance{inst}, cfgs)
	if len(regs) != 4 {
		t.Fatalf("%d checks, want 4", len(regs))
	}
	for id, r := range regs {
		def := fingerprint(r)
		if len(r.Header) != 0 || strings.Contains(def, a.cfg.Token) || strings.Contains(def, "Bearer") {
			t.Errorf("check %s carries a header or the token: %s", id, def)
		}
	}
	rec := httptest.NewRecorder()
	a.readyOnce.Do(func() { close(a.ready) })
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathSystem, nil))
	if rec.Code == http.StatusUnauthorized {
		t.Errorf("a request as Consul makes it (no header) was refused")
	}
}

func TestValidProbePath(t *testing.T) {
	for _, p := range []string{"/health", "/v1/health", "/infer?full=1", "/a/b-c_d.e~f", "/%2e%2e/x"} {
		if err := ValidProbePath(p); err != nil {
			t.Errorf("ValidProbePath(%q) = %v, want nil", p, err)
		}
	}
	for p, want := range map[string]string{
		"":                                  "empty",
		"health":                            `does not start with "/"`,
		"@169.254.169.254/latest/meta-data": `does not start with "/"`,
		"/@169.254.169.254/latest":          `contains "@"`,
		"//169.254.169.254/latest":          "names a host",
		"http://169.254.169.254/":           `does not start with "/"`,
		"/x?u=http://evil/":                 "names a host",
		`/\evil.example/`:                   "backslash",
		"/health\r\nHost: evil":             "control character",
		"/health\x00":                       "control character",
		"/he alth":                          "control character or a space",
		"/health\x7f":                       "control character",
	} {
		if err := ValidProbePath(p); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ValidProbePath(%q) = %v, want an error with %q", p, err, want)
		}
	}
}

// otherHost is a server no probe may reach; it counts its requests.
func otherHost(t *testing.T) (hostPort string, hits *atomic.Int32) {
	t.Helper()
	hits = new(atomic.Int32)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"status":"healthy","version":"1.0.0","secret":"AKIA-SECRET"}`))
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), hits
}

// TestNoRequestToOtherHosts (I11, defect 14): a health path from KV such
// as "@<host>/..." is refused with a critical output, and a redirect to
// another host is not followed; the other host's answer is never published.
func TestNoRequestToOtherHosts(t *testing.T) {
	other, hits := otherHost(t)
	app := &fakeApp{200, health("healthy", "1.0.0"), edgeinferMetrics}
	inst := app.start(t)
	prober := &appProber{client: &http.Client{CheckRedirect: noRedirects}, now: time.Now}
	for _, path := range []string{"@" + other + "/latest", "//" + other + "/latest", "/@" + other, "http://" + other + "/"} {
		st, out := prober.ProbeApplication(context.Background(), ApplicationInput{Instance: inst, HealthPath: path, ExpectVersion: true}, time.Second)
		if st != Critical || !strings.HasPrefix(out, "critical: the policy's health path is refused: ") || strings.Contains(out, "SECRET") {
			t.Errorf("health path %q: %s\n%s", path, st, out)
		}
		checkContract(t, out, "")
	}

	// The instance answers with a redirect to the other host.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+other+"/latest", http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	host, port, _ := net.SplitHostPort(redirect.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	rinst := Instance{ServiceID: "r", Address: host, Port: p, Version: "1.0.0"}
	st, out := prober.ProbeApplication(context.Background(), ApplicationInput{Instance: rinst, HealthPath: "/health", ExpectVersion: true}, time.Second)
	if st != Critical || strings.Contains(out, "SECRET") {
		t.Errorf("redirected health: %s\n%s", st, out)
	}
	// The agent's own client is built the same way.
	a := testAgent(t, Thresholds{})
	if a.app.client.CheckRedirect == nil {
		t.Error("the agent's HTTP client follows redirects")
	}

	// The functional probe's path too.
	fp := newFunctionalProbes(plugin.NewProbe)
	bad := *inferBlock
	bad.Path = "//" + other + "/infer"
	st, out = fp.ProbeFunctional(context.Background(), inferApp(t, "cat", 0), "rpi-1", &bad)
	if st != Critical || !strings.Contains(out, `critical: the functional probe "http-json" is refused: path`) {
		t.Errorf("functional path %q: %s\n%s", bad.Path, st, out)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the other host was called %d times", n)
	}
}

// TestProbeCacheBounded: queries naming anything at all do not grow the
// remembered answers past maxProbeEntries.
func TestProbeCacheBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newProbeCache(time.Second, func() time.Time { return now })
	var runs atomic.Int32
	h := c.wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runs.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	for i := 0; i < 3*maxProbeEntries; i++ {
		if i == maxProbeEntries {
			now = now.Add(time.Second) // the first ones are stale: evicted
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, PathApplication+"?service=x"+strconv.Itoa(i), nil))
		if rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("query %d: %d", i, rec.Code)
		}
	}
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	if n > maxProbeEntries {
		t.Errorf("%d remembered answers, want at most %d", n, maxProbeEntries)
	}
	if int(runs.Load()) != 3*maxProbeEntries {
		t.Errorf("%d runs for %d distinct queries", runs.Load(), 3*maxProbeEntries)
	}
}
