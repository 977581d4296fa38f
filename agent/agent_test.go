package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// testAgent is an agent whose Consul and Nomad do not answer, on the
// /proc and /sys fixtures.
func testAgent(t *testing.T, defaults Thresholds) *Agent {
	t.Helper()
	cc, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		Addr: "127.0.0.1:0", NomadAddr: "http://127.0.0.1:1", CheckTimeout: 200 * time.Millisecond,
		ProcRoot: filepath.Join("testdata", "proc"), SysRoot: filepath.Join("testdata", "sys"), DiskPath: t.TempDir(),
		Defaults: defaults, Token: testToken,
	}, cc, nc)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testToken is testAgent's token.
const testToken = "0123456789abcdef"

// get calls the handler as the agent's Consul checks do, with the token.
func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	return getWith(t, h, path, "Bearer "+testToken)
}

func getWith(t *testing.T, h http.Handler, path, auth string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		req.Header.Set(TokenHeader, auth)
	}
	h.ServeHTTP(rec, req)
	body, _ := io.ReadAll(rec.Body)
	return rec.Code, string(body)
}

func TestHandlerCodes(t *testing.T) {
	a := testAgent(t, Thresholds{})
	h := a.Handler()

	if code, _ := get(t, h, PathHealth); code != 200 {
		t.Errorf("health: %d", code)
	}
	// Fixtures: memory 75%, hottest zone 71.25°C: below the defaults.
	code, body := get(t, h, PathSystem)
	if code != 200 || !strings.Contains(body, "memory 75.0% (limit 90%") || !strings.Contains(body, "temperature 71.3°C in thermal_zone1") {
		t.Errorf("system: %d\n%s", code, body)
	}
	strict := testAgent(t, Thresholds{CPUPercent: 90, MemoryPercent: 78, DiskPercent: 95, TemperatureC: 70})
	code, body = get(t, strict.Handler(), PathSystem)
	if code != 503 || !strings.HasPrefix(body, "critical: memory 75.0% is within 5 points of its limit 78%; temperature 71.3°C is at or above its limit 70°C") {
		t.Errorf("strict system: %d\n%s", code, body)
	}

	code, body = get(t, h, PathConnectivity)
	if code != 503 || !strings.HasPrefix(body, "critical: the Nomad client at http://127.0.0.1:1 does not answer") {
		t.Errorf("connectivity: %d\n%s", code, body)
	}

	// Before the first reconciliation the service probes wait, then fail.
	code, body = get(t, h, PathApplication+"?service=x")
	if code != 503 || !strings.Contains(body, "has not read its device's services yet") {
		t.Errorf("application before ready: %d\n%s", code, body)
	}

	// Ready, with one instance of a healthy app.
	app := &fakeApp{200, health("healthy", "1.0.0"), edgeinferMetrics}
	inst := app.start(t)
	a.mu.Lock()
	a.instances = map[string]Instance{inst.ServiceID: inst}
	a.configs = map[string]*AppConfig{"edgeinfer": {App: "edgeinfer", HealthPath: "/health", ExpectVersion: true}}
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })

	code, body = get(t, h, PathApplication+"?service="+inst.ServiceID)
	if code != 200 || !strings.HasPrefix(body, "passing: healthy; version 1.0.0 as released") || strings.Contains(body, "\nmetrics: ") {
		t.Errorf("application: %d\n%s", code, body)
	}
	code, body = get(t, h, PathApplication+"?service=gone")
	if code != 503 || !strings.Contains(body, `no fleetplan-managed service instance "gone"`) {
		t.Errorf("unknown instance: %d\n%s", code, body)
	}
	code, body = get(t, h, PathFunctional+"?service="+inst.ServiceID)
	if code != 503 || !strings.Contains(body, "has no functional block") {
		t.Errorf("functional without a block: %d\n%s", code, body)
	}
	code, body = get(t, h, PathMetrics+"?service="+inst.ServiceID)
	if code != 200 || !strings.Contains(body, `"error_rate": 0.025`) || !strings.Contains(body, `"memory_percent": 75`) {
		t.Errorf("metrics: %d\n%s", code, body)
	}
	code, body = get(t, h, PathStatus)
	if code != 200 || !strings.Contains(body, inst.ServiceID) {
		t.Errorf("status: %d\n%s", code, body)
	}
}
