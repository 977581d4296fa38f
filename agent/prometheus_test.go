package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"

	"github.com/fleetplan/fleetplan/contract"
)

// testMapping maps the fixtures' /infer series.
var testMapping = MetricsConfig{
	Format:   MetricsFormatPrometheus,
	Requests: `http_requests_total{handler="/infer"}`,
	Errors:   `http_requests_total{handler="/infer",code=~"5.."}`,
	Latency:  `http_request_duration_seconds{handler="/infer"}`,
}

func page(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "prometheus", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParsePrometheus(t *testing.T) {
	mp, err := newPromMapping(testMapping)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := parsePrometheus(page(t, "page1.prom"), mp)
	if err != nil {
		t.Fatal(err)
	}
	// The /health series is left out by the handler matcher.
	if sc.requests == nil || *sc.requests != 102 || sc.errors == nil || *sc.errors != 2 {
		t.Errorf("requests %v errors %v, want 102 and 2", sc.requests, sc.errors)
	}
	if len(sc.buckets) != 4 || sc.buckets[3].count != 102 || sc.buckets[1].le != 0.05 || sc.buckets[1].count != 90 || sc.scale != 1000 {
		t.Errorf("buckets %+v scale %v", sc.buckets, sc.scale)
	}
	if sc.rss == nil || *sc.rss != 20971520 {
		t.Errorf("process_resident_memory_bytes = %v", sc.rss)
	}
	if _, err := parsePrometheus(page(t, "broken.prom"), mp); err == nil || !strings.Contains(err.Error(), "not the Prometheus text format") {
		t.Errorf("a broken page: %v", err)
	}
	// A counter named without its _total suffix is found too.
	sel, _ := contract.ParseSelector(`http_requests{code="500"}`)
	sc, _ = parsePrometheus(page(t, "page1.prom"), promMapping{requests: &sel})
	if sc.requests == nil || *sc.requests != 2 {
		t.Errorf("http_requests{code=\"500\"} = %v, want 2", sc.requests)
	}
}

func TestBucketQuantile(t *testing.T) {
	inf := bucket{le: posInf()}
	for _, c := range []struct {
		name string
		bs   []bucket
		q    float64
		want float64
		ok   bool
	}{
		// Prometheus' histogram_quantile: linear within the bucket.
		{"within a bucket", []bucket{{0.01, 10}, {0.05, 10}, {0.1, 50}, {inf.le, 50}}, 0.95, 0.096875, true},
		{"median", []bucket{{0.01, 10}, {0.05, 10}, {0.1, 50}, {inf.le, 50}}, 0.5, 0.06875, true},
		{"first bucket starts at 0", []bucket{{0.01, 20}, {inf.le, 20}}, 0.95, 0.0095, true},
		{"+Inf bucket: the highest finite bound", []bucket{{0.1, 10}, {inf.le, 100}}, 0.95, 0.1, true},
		{"no observation", []bucket{{0.1, 0}, {inf.le, 0}}, 0.95, 0, false},
		{"no +Inf bucket", []bucket{{0.1, 3}}, 0.95, 0, false},
	} {
		got, ok := bucketQuantile(c.q, c.bs)
		if ok != c.ok || (ok && (got < c.want-1e-9 || got > c.want+1e-9)) {
			t.Errorf("%s: %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
}

// TestPromRates follows an instance through scrapes: rates over the
// counter deltas, a counter reset, and missing metrics ("not measured",
// never a value).
func TestPromRates(t *testing.T) {
	mp, _ := newPromMapping(testMapping)
	ms := newMeasurements()
	in := Instance{ServiceID: "s1", App: "edgeinfer", Version: "2.0.0"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	scrape := func(name string, at time.Time) (contract.Metrics, missing) {
		sc, err := parsePrometheus(page(t, name), mp)
		if err != nil {
			t.Fatal(err)
		}
		var m contract.Metrics
		why := ms.promRates(in, mp, sc, &m, at)
		return m, why
	}
	m, why := scrape("page1.prom", t0)
	if m.ErrorRate != nil || m.P95LatencyMS != nil || why.errorRate != "waiting for a second scrape" || why.latency != "waiting for a second scrape" {
		t.Errorf("one scrape: %+v %q", m, why)
	}
	m, why = scrape("page2.prom", t0.Add(5*time.Second))
	if why != (missing{}) || m.ErrorRate == nil || *m.ErrorRate != 0.1 || m.P95LatencyMS == nil || *m.P95LatencyMS != 96.875 || *m.RequestsTotal != 202 {
		t.Errorf("two scrapes: error rate %v p95 %v requests %v (%q), want 0.1 (10/100), 96.875 ms, 202", m.ErrorRate, m.P95LatencyMS, m.RequestsTotal, why)
	}
	// The application restarted: its counters start from 0 again; the
	// delta since the last scrape is the new counter itself (18+5
	// requests, 5 errors), added to the earlier ones: (10+5)/(100+23).
	m, _ = scrape("page3-reset.prom", t0.Add(10*time.Second))
	if m.ErrorRate == nil || *m.ErrorRate != round4(15.0/123) {
		t.Errorf("after a reset: error rate %v, want %v", m.ErrorRate, round4(15.0/123))
	}
	// The window holds the deltas since the instance was first seen.
	sum, ok := ms.summary("edgeinfer", "n1", "", t0.Add(11*time.Second), false)
	if !ok || sum.Window == nil || sum.Window.Requests == nil || *sum.Window.Requests != 123 || *sum.Window.Errors != 15 {
		t.Errorf("window: %+v", sum.Window)
	}
	// The metrics disappear from the page: not measured, with the reason.
	m, why = scrape("other.prom", t0.Add(15*time.Second))
	if m.ErrorRate != nil || m.P95LatencyMS != nil || why.errorRate != `requests counter http_requests_total{handler="/infer"} is not on the page` || !strings.HasPrefix(why.latency, "latency histogram") {
		t.Errorf("missing metrics: %+v %q", m, why)
	}
}

func posInf() float64 { return 1 / zero }

var zero = 0.0

// BenchmarkParsePrometheus parses a typical page (an application's
// counters and histogram plus the Go client's default collectors).
func BenchmarkParsePrometheus(b *testing.B) {
	body := append(page(b, "page1.prom"), goPage(b)...)
	mp, _ := newPromMapping(testMapping)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parsePrometheus(body, mp); err != nil {
			b.Fatal(err)
		}
	}
}

// goPage is a Go program's default page (the agent's own registry: Go
// runtime and process collectors), as an application would add it.
func goPage(tb testing.TB) []byte {
	tb.Helper()
	fams, err := newAgentMetrics().reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	for _, f := range fams {
		if f.GetName() == "process_resident_memory_bytes" {
			continue // the fixture has it
		}
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			tb.Fatal(err)
		}
	}
	return buf.Bytes()
}
