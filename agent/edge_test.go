package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

func TestJudgeTriggers(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	cfg := &AppConfig{App: "edgeinfer", MaxErrorRate: 0.05, MaxP95LatencyIncreasePercent: 100,
		Functional: &FunctionalConfig{Probe: "http-json", MaxLatency: Duration(250 * time.Millisecond)}}
	noHit := func(string, bool) int { return 0 }
	for _, c := range []struct {
		name  string
		in    triggerInput
		want  []finding
		wantS string
	}{
		{"within the triggers", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0.01), P95LatencyMS: f(30)},
			base: &contract.Metrics{P95LatencyMS: f(20)}, baseVersion: "1.0.0"}, nil, "passing"},
		{"error rate", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0.072), P95LatencyMS: f(20)}},
			[]finding{{Critical, "error rate 0.072 > max_error_rate 0.05 (rollback trigger)", false}}, "critical"},
		{"error rate not measured", triggerInput{cfg: cfg, cur: contract.Metrics{P95LatencyMS: f(20)}, why: missing{errorRate: "errors counter x is not on the page"}},
			[]finding{{Warning, "error rate not measured (max_error_rate 0.05): errors counter x is not on the page", false}}, "warning"},
		{"p95 against the device's baseline", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0), P95LatencyMS: f(50)},
			base: &contract.Metrics{P95LatencyMS: f(20)}, baseVersion: "1.0.0"},
			[]finding{{Critical, "p95 latency 50.0 ms vs 20.0 ms of 1.0.0 before the switch (+150% > max_p95_latency_increase_percent 100, rollback trigger)", true}}, "critical"},
		{"a small increase is noise", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0), P95LatencyMS: f(3)},
			base: &contract.Metrics{P95LatencyMS: f(1)}, baseVersion: "1.0.0"}, nil, "passing"},
		{"no baseline: functional max_latency", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0), P95LatencyMS: f(400)}},
			[]finding{{Critical, "p95 latency 400.0 ms > functional max_latency 250ms (no pre-switch baseline on this device)", true}}, "critical"},
		{"memory doubled", triggerInput{cfg: cfg, cur: contract.Metrics{ErrorRate: f(0), P95LatencyMS: f(20), RSSMB: f(21)},
			base: &contract.Metrics{P95LatencyMS: f(20), RSSMB: f(10)}, baseVersion: "1.0.0"},
			[]finding{{Critical, "memory 21.0 MB, at least twice the 10.0 MB of 1.0.0 before the switch (degradation)", false}}, "critical"},
		{"no trigger in the policy", triggerInput{cfg: &AppConfig{App: "x"}, cur: contract.Metrics{}}, nil, "passing"},
	} {
		got := judgeTriggers(c.in, noHit)
		if len(got) != len(c.want) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: %+v, want %+v", c.name, got[i], c.want[i])
			}
		}
		if s := string(worstFinding(got)); s != c.wantS {
			t.Errorf("%s: status %s, want %s", c.name, s, c.wantS)
		}
	}
}

// TestJudgeTrend: a memory line projected past twice the baseline fails
// only after trendConfirm consecutive measurements; a flat one never.
func TestJudgeTrend(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := &AppConfig{App: "edgeinfer", TrendHorizon: Duration(time.Minute)}
	base := &contract.Metrics{RSSMB: ptr(10.0)}
	var rising, flat []scheduler.Sample
	for i := range 8 {
		at := now.Add(time.Duration(i) * 2 * time.Second)
		rising = append(rising, scheduler.Sample{At: at, Value: 10 + 0.5*float64(i)})
		flat = append(flat, scheduler.Sample{At: at, Value: 10 + 0.01*float64(i%2)})
	}
	end := rising[len(rising)-1].At
	hits := map[string]int{}
	hit := func(m string, crossed bool) int {
		if !crossed {
			hits[m] = 0
			return 0
		}
		hits[m]++
		return hits[m]
	}
	in := triggerInput{cfg: cfg, node: "rpi-1", cur: contract.Metrics{RSSMB: ptr(13.5)}, base: base, baseVersion: "1.0.0", trend: instSnapshot{mem: rising}, now: end}
	for i := 1; i < trendConfirm; i++ {
		if fs := judgeTriggers(in, hit); len(fs) != 0 {
			t.Fatalf("measurement %d already fails: %+v", i, fs)
		}
	}
	fs := judgeTriggers(in, hit)
	if len(fs) != 1 || fs[0].status != Critical || !strings.HasPrefix(fs[0].reason, "gradual degradation: memory on rpi-1 grows 0.25 MB/s") || !strings.Contains(fs[0].reason, "above the limit 20 MB") {
		t.Errorf("a rising memory: %+v", fs)
	}
	in.trend = instSnapshot{mem: flat}
	if fs := judgeTriggers(in, hit); len(fs) != 0 {
		t.Errorf("a flat memory: %+v", fs)
	}
}

// TestBaselineFromPreviousVersion: the first measurement of a new version
// takes the last measurement of the other version as its baseline.
func TestBaselineFromPreviousVersion(t *testing.T) {
	ms := newMeasurements()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	v1 := Instance{ServiceID: "blue", App: "edgeinfer", Version: "1.0.0", Slot: "blue"}
	v2 := Instance{ServiceID: "green", App: "edgeinfer", Version: "2.0.0", Slot: "green"}
	ms.record(v1, reading{at: t0, m: contract.Metrics{P95LatencyMS: ptr(10.0)}})
	ms.record(v1, reading{at: t0.Add(time.Second), m: contract.Metrics{P95LatencyMS: ptr(12.0)}})
	_, base, bv, _ := ms.record(v2, reading{at: t0.Add(2 * time.Second), m: contract.Metrics{P95LatencyMS: ptr(40.0)}})
	if base == nil || *base.P95LatencyMS != 12 || bv != "1.0.0" {
		t.Fatalf("baseline %+v of %q, want 12 ms of 1.0.0", base, bv)
	}
	// Later measurements of the old version do not move it.
	ms.record(v1, reading{at: t0.Add(3 * time.Second), m: contract.Metrics{P95LatencyMS: ptr(99.0)}})
	_, base, _, _ = ms.record(v2, reading{at: t0.Add(4 * time.Second), m: contract.Metrics{P95LatencyMS: ptr(41.0)}})
	if *base.P95LatencyMS != 12 {
		t.Errorf("baseline moved to %v", *base.P95LatencyMS)
	}
	_, base, _, _ = ms.record(v1, reading{at: t0.Add(5 * time.Second), m: contract.Metrics{P95LatencyMS: ptr(11.0)}})
	if base != nil {
		t.Errorf("the first version has a baseline: %+v", base)
	}
	// The summary speaks for the newest instance.
	s, ok := ms.summary("edgeinfer", "rpi-1", "r1", t0.Add(6*time.Second), true)
	if !ok || s.Version != "2.0.0" || s.Slot != "green" || s.BaselineVersion != "1.0.0" || s.Baseline == nil || s.Window.Samples != 2 || len(s.Window.LatencyMS) != 2 {
		t.Errorf("summary %+v window %+v", s, s.Window)
	}
	s, _ = ms.summary("edgeinfer", "rpi-1", "", t0.Add(7*time.Second), false)
	if s.Window.Samples != 0 || !s.Since.Equal(t0.Add(6*time.Second)) {
		t.Errorf("the window did not start again after the request's answer: %+v since %v", s.Window, s.Since)
	}
}

func TestStableKey(t *testing.T) {
	a := stableKey(200, []byte("passing: healthy; version 1.0.0; GET http://127.0.0.1:2345/health: 200\nhealth: {\"uptime_seconds\":12.5}\n"))
	b := stableKey(200, []byte("passing: healthy; version 1.0.0; GET http://127.0.0.1:2345/health: 200\nhealth: {\"uptime_seconds\":17.5}\n"))
	c := stableKey(503, []byte("critical: error rate 0.072 > max_error_rate 0.05 (rollback trigger); healthy\n"))
	d := stableKey(503, []byte("critical: error rate 0.081 > max_error_rate 0.05 (rollback trigger); healthy\n"))
	e := stableKey(503, []byte("critical: p95 latency 81.0 ms vs 20.0 ms; healthy\n"))
	if a != b || c != d || c == e || a == c {
		t.Errorf("keys: %q %q %q %q %q", a, b, c, d, e)
	}
}
