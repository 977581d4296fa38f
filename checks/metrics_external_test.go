package checks_test

import (
	"testing"

	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/checks"
)

// The watcher reads exactly what the device agent writes.
func TestParseMetricsOfAgentOutput(t *testing.T) {
	er, p95, rss, cpu := 0.25, 12.5, 40.0, 33.0
	line := agent.Metrics{ErrorRate: &er, P95LatencyMS: &p95, RSSMB: &rss, CPUPercent: &cpu}.MetricsLine()
	out := "passing: healthy; version 1.0.0 as released\nhealth: {\"status\":\"healthy\",\"version\":\"1.0.0\"}\n" + line
	m := checks.ParseMetrics(out)
	if m == nil || m.ErrorRate != er || m.P95LatencyMS != p95 || m.MemoryMB != rss || m.CPUPercent != cpu {
		t.Fatalf("metrics %+v from %q", m, out)
	}
	if checks.ParseMetrics("HTTP GET: 200 OK Output: {}") != nil {
		t.Fatal("metrics read from an output without a metrics line")
	}
	if checks.ParseMetrics(agent.Metrics{}.MetricsLine()) != nil {
		t.Fatal("metrics read from an application that could not be measured")
	}
}
