package contract

import (
	"math"
	"testing"
)

func ptr(f float64) *float64 { return &f }

func TestMetricsFormat(t *testing.T) {
	m := Metrics{ErrorRate: ptr(0.0), P95LatencyMS: ptr(1.25), CPUPercent: ptr(3.0)}
	want := `metrics: {"error_rate":0,"p95_latency_ms":1.25,"rss_mb":null,"requests_total":null,"cpu_percent":3,"memory_percent":null}`
	if got := m.Format(); got != want {
		t.Errorf("Format =\n%s\nwant\n%s", got, want)
	}
	for _, out := range []string{
		want,
		"HTTP GET http://x/: 200 OK Output: passing: healthy\nhealth: {}\n" + want + "\n",
	} {
		got, ok := ParseMetrics(out)
		if !ok || *got.P95LatencyMS != 1.25 || got.RSSMB != nil {
			t.Errorf("ParseMetrics(%q) = %+v, %v", out, got, ok)
		}
	}
	for _, out := range []string{"", "passing\nmetrics: {\"error_rate\":", "no metrics here", "HTTP GET: 200 OK Output: {}"} {
		if _, ok := ParseMetrics(out); ok {
			t.Errorf("ParseMetrics(%q) found a metrics line", out)
		}
	}
	nan := Metrics{ErrorRate: ptr(math.NaN()), RSSMB: ptr(math.Inf(1))}
	if got, ok := ParseMetrics(nan.Format()); !ok || got.ErrorRate != nil || got.RSSMB != nil {
		t.Errorf("NaN and Inf are not written as null: %s", nan.Format())
	}
}

// The watcher reads exactly what the device agent writes, from the whole
// output of the agent's layer 3 check.
func TestParseMetricsOfAgentOutput(t *testing.T) {
	er, p95, rss, cpu := 0.25, 12.5, 40.0, 33.0
	line := Metrics{ErrorRate: &er, P95LatencyMS: &p95, RSSMB: &rss, CPUPercent: &cpu}.Format()
	out := "passing: healthy; version 1.0.0 as released\nhealth: {\"status\":\"healthy\",\"version\":\"1.0.0\"}\n" + line
	m, ok := ParseMetrics(out)
	if !ok || !m.Measured() || *m.ErrorRate != er || *m.P95LatencyMS != p95 || *m.RSSMB != rss || *m.CPUPercent != cpu || m.MemoryPercent != nil {
		t.Fatalf("metrics %+v, %v from %q", m, ok, out)
	}
	if m, ok := ParseMetrics(Metrics{}.Format()); !ok || m.Measured() {
		t.Fatal("an application that could not be measured reads as measured")
	}
	if m, ok := ParseMetrics(Metrics{CPUPercent: &cpu, MemoryPercent: &cpu}.Format()); !ok || m.Measured() {
		t.Fatal("the device's figures alone read as the application measured")
	}
}

func TestSlotMetaKey(t *testing.T) {
	if k := SlotMetaKey("edgeinfer"); k != "fleetplan.edgeinfer.slot" {
		t.Fatalf("SlotMetaKey = %q", k)
	}
	for _, tt := range []struct {
		key, app string
		ok       bool
	}{
		{"fleetplan.edgeinfer.slot", "edgeinfer", true},
		{"fleetplan.a.b.slot", "a.b", true},
		{"fleetplan.slot", "", false},
		{"fleetplan..slot", "", false},
		{"edge.bin_dir", "", false},
		{"fleetplan.edgeinfer.version", "", false},
	} {
		app, ok := AppOfSlotMetaKey(tt.key)
		if app != tt.app || ok != tt.ok {
			t.Errorf("AppOfSlotMetaKey(%q) = %q, %v; want %q, %v", tt.key, app, ok, tt.app, tt.ok)
		}
	}
	if SlotJobID("edgeinfer", "blue") != "edgeinfer-blue" || SlotTag("green") != "fleetplan-slot=green" || VersionTag("1.0.0") != "fleetplan-version=1.0.0" {
		t.Fatal("job ID or tags changed")
	}
}
