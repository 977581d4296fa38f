package agent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/plugin"
)

// fakeApp is an httptest application with a health and a metrics endpoint.
type fakeApp struct {
	healthCode int
	healthBody string
	metrics    string // "" answers 404
}

func (f *fakeApp) start(t *testing.T) Instance {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(f.healthCode)
		_, _ = w.Write([]byte(f.healthBody))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		if f.metrics == "" {
			http.NotFound(w, nil)
			return
		}
		_, _ = w.Write([]byte(f.metrics))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return Instance{ServiceID: "_nomad-task-x", Service: "edgeinfer", App: "edgeinfer", Address: host, Port: p, Slot: "blue", Version: "1.0.0"}
}

const edgeinferMetrics = `{"requests_total":120,"errors_total":3,"error_rate":0.025,"window_requests":120,"window_error_rate":0.025,"p95_latency_ms":12.5,"rss_bytes":9961472,"leaked_bytes":0,"uptime_seconds":60,"version":"1.0.0","build":"1.0.0+r1"}`

func health(status, version string) string {
	return `{"status":"` + status + `","version":"` + version + `","build":"` + version + `+r1","uptime_seconds":1.5,` + "\n" + `"checks":{"model":"loaded","inference":"ok"}}`
}

func newProber() *appProber {
	return &appProber{client: &http.Client{}, now: time.Now}
}

func TestProbeApplication(t *testing.T) {
	for _, c := range []struct {
		name        string
		app         fakeApp
		expect      bool
		want        plugin.Status
		first       string // prefix of the first line
		wantVersion string // what the watcher's parser reads ("" none)
	}{
		{"healthy", fakeApp{200, health("healthy", "1.0.0"), edgeinferMetrics}, true, Passing,
			"passing: healthy; version 1.0.0 as released (fleetplan-version=1.0.0); GET http://", "1.0.0"},
		{"degraded", fakeApp{200, health("degraded", "1.0.0"), edgeinferMetrics}, true, Warning,
			"warning: the application reports degraded; version 1.0.0 as released", "1.0.0"},
		{"unhealthy 503", fakeApp{503, health("unhealthy", "1.0.0"), edgeinferMetrics}, true, Critical,
			"critical: the application reports unhealthy; version 1.0.0", "1.0.0"},
		{"unhealthy 200", fakeApp{200, health("unhealthy", "1.0.0"), ""}, true, Critical,
			"critical: the application reports unhealthy", "1.0.0"},
		{"wrong version", fakeApp{200, health("healthy", "9.9.9"), edgeinferMetrics}, true, Critical,
			"critical: version 9.9.9 but the instance runs release fleetplan-version=1.0.0", "9.9.9"},
		// I4: the application reports NOMAD_META_fleetplan_version
		// verbatim, or with a leading v or build metadata.
		{"version with build metadata", fakeApp{200, health("healthy", "1.0.0+r-20260101-1"), edgeinferMetrics}, true, Passing,
			"passing: healthy; version 1.0.0+r-20260101-1 as released (fleetplan-version=1.0.0)", "1.0.0+r-20260101-1"},
		{"version with a leading v", fakeApp{200, health("healthy", "v1.0.0"), edgeinferMetrics}, true, Passing,
			"passing: healthy; version v1.0.0 as released", "v1.0.0"},
		{"pre-release is another version", fakeApp{200, health("healthy", "1.0.0-rc1"), edgeinferMetrics}, true, Critical,
			"critical: version 1.0.0-rc1 but the instance runs release fleetplan-version=1.0.0", "1.0.0-rc1"},
		{"wrong version not checked", fakeApp{200, health("healthy", "9.9.9"), edgeinferMetrics}, false, Passing,
			"passing: healthy; version 9.9.9; GET", "9.9.9"},
		{"healthy but 500", fakeApp{500, health("healthy", "1.0.0"), ""}, true, Critical,
			"critical: HTTP 500", "1.0.0"},
		{"not json", fakeApp{200, "OK", ""}, true, Critical,
			"critical: the answer is not the health JSON (invalid character 'O'", ""},
		{"json without status", fakeApp{200, `{"version":"1.0.0"}`, ""}, true, Critical,
			"critical: the answer has no status", "1.0.0"},
		{"unknown status", fakeApp{200, health("fine", "1.0.0"), ""}, true, Critical,
			`critical: unknown status "fine" (want healthy, degraded or unhealthy)`, "1.0.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			app := c.app
			inst := app.start(t)
			st, out := newProber().ProbeApplication(context.Background(), ApplicationInput{
				Instance: inst, HealthPath: "/health", ExpectVersion: c.expect,
			}, time.Second)
			if st != c.want {
				t.Errorf("status = %s, want %s\n%s", st, c.want, out)
			}
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if !strings.HasPrefix(lines[0], c.first) {
				t.Errorf("first line = %q\nwant prefix %q", lines[0], c.first)
			}
			if strings.ContainsAny(lines[0], "{}") {
				t.Errorf("first line has a brace: %q", lines[0])
			}
			checkContract(t, out, c.wantVersion)
			// The same answer again gives the same output (no timing in it).
			_, again := newProber().ProbeApplication(context.Background(), ApplicationInput{
				Instance: inst, HealthPath: "/health", ExpectVersion: c.expect,
			}, time.Second)
			if again != out {
				t.Errorf("the output changed between two runs with the same answer:\n%s\n%s", out, again)
			}
		})
	}
}

// checkContract verifies the output contract of the layer 3 agent check
// (package documentation), as Consul records the output.
func checkContract(t *testing.T, out, wantVersion string) {
	t.Helper()
	consulOutput := "HTTP GET http://127.0.0.1:7474/v1/probe/application?service=x: 200 OK Output: " + out
	_, version, ok := checks.ParseCheckOutput(consulOutput)
	if wantVersion == "" {
		if ok && version != "" {
			t.Errorf("the watcher reads version %q from an output without health JSON:\n%s", version, out)
		}
	} else if !ok || version != wantVersion {
		t.Errorf("the watcher reads version %q (ok %v), want %q:\n%s", version, ok, wantVersion, out)
	}
	// No metrics line any more: the numbers travel in the summary.
	if _, ok := contract.ParseMetrics(out); ok {
		t.Errorf("the output has a metrics line:\n%s", out)
	}
}

func TestProbeApplicationUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	inst := Instance{ServiceID: "s", Address: "127.0.0.1", Port: addr.Port, Version: "1.0.0"}
	st, out := newProber().ProbeApplication(context.Background(), ApplicationInput{Instance: inst, HealthPath: "/health", ExpectVersion: true}, time.Second)
	if st != Critical || !strings.HasPrefix(out, "critical: GET http://127.0.0.1:"+strconv.Itoa(addr.Port)+"/health failed: ") || !strings.Contains(out, "connection refused") {
		t.Errorf("unreachable app: %s\n%s", st, out)
	}
	checkContract(t, out, "")
}

func TestProbeApplicationSlow(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	st, out := newProber().ProbeApplication(context.Background(), ApplicationInput{Instance: Instance{Address: host, Port: p}, HealthPath: "/health"}, 200*time.Millisecond)
	if st != Critical || !strings.Contains(out, "/health gave no answer within") {
		t.Errorf("slow app: %s\n%s", st, out)
	}
}

func TestCompactJSONCut(t *testing.T) {
	long := `{"status":"healthy","version":"1.0.0","checks":{"x":"` + strings.Repeat("a", 3*maxHealthLine) + `"}}`
	got := compactJSON([]byte(long))
	if len(got) != maxHealthLine+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("compactJSON cut to %d bytes", len(got))
	}
	if st, ver, ok := checks.ParseCheckOutput("x Output: passing\nhealth: " + got + "\nmetrics: {}"); !ok || st != "healthy" || ver != "1.0.0" {
		t.Errorf("the watcher reads %q %q %v from a cut health line", st, ver, ok)
	}
}
