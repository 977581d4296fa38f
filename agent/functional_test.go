package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
)

func inferApp(t *testing.T, label string, delay time.Duration) Instance {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/infer" {
			http.NotFound(w, r)
			return
		}
		time.Sleep(delay)
		_, _ = w.Write([]byte(`{"label":"` + label + `","confidence":0.97}`))
	}))
	t.Cleanup(srv.Close)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	return Instance{ServiceID: "svc-" + label, Service: "edgeinfer", App: "edgeinfer", Address: host, Port: p}
}

var inferBlock = &FunctionalConfig{
	Probe: "http-json", Path: "/infer", Input: `{"image":"cat.jpg"}`,
	Expect: map[string]string{"label": "cat"}, MaxLatency: Duration(500 * time.Millisecond), Interval: Duration(5 * time.Second),
}

// TestProbeFunctionalHTTPJSON runs the built-in http-json probe plugin.
func TestProbeFunctionalHTTPJSON(t *testing.T) {
	fp := newFunctionalProbes(plugin.NewProbe)
	st, out := fp.ProbeFunctional(context.Background(), inferApp(t, "cat", 0), "rpi-1", inferBlock)
	if st != Passing || !strings.HasPrefix(out, "passing: http-json POST /infer: 200 in ") || !strings.Contains(out, `label = "cat" as expected`) {
		t.Errorf("right answer: %s\n%s", st, out)
	}
	st, out = fp.ProbeFunctional(context.Background(), inferApp(t, "dog", 0), "rpi-1", inferBlock)
	if st != Critical || !strings.Contains(out, `label = "dog", expected "cat"`) {
		t.Errorf("wrong answer: %s\n%s", st, out)
	}
	slow := *inferBlock
	slow.MaxLatency = Duration(20 * time.Millisecond)
	st, out = fp.ProbeFunctional(context.Background(), inferApp(t, "cat", 60*time.Millisecond), "rpi-1", &slow)
	if st != Critical || !strings.Contains(out, "(max 20ms exceeded)") {
		t.Errorf("slow answer: %s\n%s", st, out)
	}
}

func TestProbeFunctionalProblems(t *testing.T) {
	inst := inferApp(t, "cat", 0)
	unknown := *inferBlock
	unknown.Probe = "http-jsn"
	st, out := newFunctionalProbes(plugin.NewProbe).ProbeFunctional(context.Background(), inst, "n", &unknown)
	if st != Critical || !strings.Contains(out, `the functional probe "http-jsn" cannot run: unknown probe "http-jsn"; did you mean "http-json"?`) {
		t.Errorf("unknown probe: %s\n%s", st, out)
	}
	failing := func(string) (plugin.Probe, error) { return &fakeProbe{err: errors.New("boom")}, nil }
	st, out = newFunctionalProbes(failing).ProbeFunctional(context.Background(), inst, "n", inferBlock)
	if st != Critical || !strings.Contains(out, "failed: boom") {
		t.Errorf("probe error: %s\n%s", st, out)
	}
}

// TestFunctionalProbeCache configures a probe once per instance and again
// when the block changes; the plugin gets only the attributes its schema
// declares.
func TestFunctionalProbeCache(t *testing.T) {
	var made []*fakeProbe
	factory := func(name string) (plugin.Probe, error) {
		p := &fakeProbe{result: plugin.Result{Status: plugin.StatusPassing, Output: "fine"}}
		made = append(made, p)
		return p, nil
	}
	fp := newFunctionalProbes(factory)
	inst := Instance{ServiceID: "a", Address: "127.0.0.1", Port: 1}
	for range 3 {
		if st, out := fp.ProbeFunctional(context.Background(), inst, "n", inferBlock); st != Passing || out != "passing: http-json fine\n" {
			t.Fatalf("%s %q", st, out)
		}
	}
	if len(made) != 1 {
		t.Fatalf("made %d probes for one instance, want 1", len(made))
	}
	cfg := made[0].config
	if cfg["path"] != "/infer" || cfg["expect"] != `{"label":"cat"}` || cfg["max_latency"] != "500ms" || cfg["timeout"] != "2s" {
		t.Errorf("plugin config = %v", cfg)
	}
	if _, ok := cfg["input"]; ok {
		t.Errorf("an attribute outside the schema was passed: %v", cfg)
	}
	changed := *inferBlock
	changed.Path = "/v2/infer"
	fp.ProbeFunctional(context.Background(), inst, "n", &changed)
	if len(made) != 2 || made[1].config["path"] != "/v2/infer" {
		t.Errorf("a changed block did not make a new probe (%d made)", len(made))
	}
	fp.forget(func(string) bool { return false })
	if len(fp.probes) != 0 {
		t.Error("forget kept probes")
	}
	if got := FunctionalNotes(inferBlock); got != `fleetplan device agent, layer 4: probe http-json on /infer with input {"image":"cat.jpg"}; expects label = cat; answers slower than max_latency 500ms fail.` {
		t.Errorf("notes = %q", got)
	}
}

type fakeProbe struct {
	config map[string]string
	result plugin.Result
	err    error
}

func (f *fakeProbe) PluginInfo() plugin.Info {
	return plugin.Info{Name: "fake", Type: plugin.TypeProbe}
}
func (f *fakeProbe) ConfigSchema() []plugin.Field {
	return []plugin.Field{{Name: "path"}, {Name: "expect"}, {Name: "max_latency"}, {Name: "timeout"}}
}
func (f *fakeProbe) SetConfig(_ context.Context, c map[string]string) error {
	f.config = c
	return nil
}
func (f *fakeProbe) Probe(context.Context, plugin.Target) (plugin.Result, error) {
	return f.result, f.err
}
