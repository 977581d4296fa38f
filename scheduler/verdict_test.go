package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestDefaultGate(t *testing.T) {
	p := ctrlPolicy()
	p.Health.Grace = 10 * time.Second
	p.Health.Application.MaxRestarts = 2
	switched := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &DeviceRecord{SwitchedAt: switched}
	running := &AllocHealth{ID: "0123456789", Status: "running"}
	pass := []CheckResult{{Name: "serfHealth", Layer: 1, Status: "passing"}, {Name: "fleetplan L3 application", Layer: 3, Status: "passing"}}
	crit := []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "critical", Output: "HTTP GET: 503 Service Unavailable"}}
	nm := "HTTP GET http://127.0.0.1:7474/v1/probe/application?service=x: 429 Too Many Requests Output: warning: error rate not measured (max_error_rate 0.05): the metrics endpoint gives none; healthy; version 2.0.0 as released"
	tests := []struct {
		name   string
		h      DeviceHealth
		after  time.Duration
		want   VerdictStatus
		layer  int
		reason string
	}{
		{"healthy", DeviceHealth{Online: true, Alloc: running, Checks: pass, Version: "2.0.0"}, 2 * time.Second, VerdictPass, 0, ""},
		{"offline is never a failure", DeviceHealth{Online: false}, 10 * time.Minute, VerdictPending, 1, "offline"},
		{"no alloc yet", DeviceHealth{Online: true}, 5 * time.Second, VerdictPending, 3, "no allocation"},
		{"no alloc past the deadline", DeviceHealth{Online: true}, 71 * time.Second, VerdictFail, 3, "deadline"},
		{"alloc pending", DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "pending"}}, 5 * time.Second, VerdictPending, 3, "pending"},
		{"alloc failed", DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "failed", Restarts: 1}}, 5 * time.Second, VerdictFail, 3, "failed"},
		{"crash loop", DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "running", Restarts: 3}, Checks: pass}, 5 * time.Second, VerdictFail, 3, "crash loop: 3 restarts (max_restarts 2)"},
		{"restarts within budget", DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "running", Restarts: 2}, Checks: pass}, 5 * time.Second, VerdictPass, 0, ""},
		{"wrong version", DeviceHealth{Online: true, Alloc: running, Checks: pass, Version: "1.9.0"}, 5 * time.Second, VerdictFail, 3, "reports version 1.9.0, expected 2.0.0"},
		{"critical within grace", DeviceHealth{Online: true, Alloc: running, Checks: crit}, 5 * time.Second, VerdictPending, 3, "within grace"},
		{"critical after grace", DeviceHealth{Online: true, Alloc: running, Checks: crit}, 11 * time.Second, VerdictFail, 3, "503"},
		{"critical after grace while restarting", DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "running", Restarts: 1}, Checks: crit}, 11 * time.Second, VerdictFail, 3, "503 Service Unavailable (the allocation restarted 1 time, max_restarts 2)"},
		{"critical check not run yet", DeviceHealth{Online: true, Alloc: running, Checks: []CheckResult{{Name: "fleetplan L4 functional", Layer: 4, Status: "critical"}}}, 20 * time.Second, VerdictPending, 4, "has not run yet"},
		{"critical check never ran by the deadline", DeviceHealth{Online: true, Alloc: running, Checks: []CheckResult{{Name: "fleetplan L4 functional", Layer: 4, Status: "critical"}}}, 80 * time.Second, VerdictFail, 4, "has not run yet"},
		{"no checks yet", DeviceHealth{Online: true, Alloc: running, Checks: pass[:1]}, 5 * time.Second, VerdictPending, 3, "no health check"},
		{"warning passes", DeviceHealth{Online: true, Alloc: running, Checks: []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "warning", Output: "HTTP GET http://127.0.0.3:20123/health: 429 Too Many Requests Output: busy"}}}, 5 * time.Second, VerdictPass, 0, ""},
		{"warning without output has not run", DeviceHealth{Online: true, Alloc: running, Checks: []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "warning"}}}, 5 * time.Second, VerdictPending, 3, "has not run yet"},
		{"a trigger not measured is no pass", DeviceHealth{Online: true, Alloc: running, Checks: append(pass[:2:2], CheckResult{Name: "fleetplan L3 version and metrics", Layer: 3, Status: "warning", Output: nm})}, 20 * time.Second, VerdictPending, 3, "error rate not measured (max_error_rate 0.05): the metrics endpoint gives none; healthy; version 2.0.0 as released (no evidence for a declared trigger: not a pass)"},
		{"a trigger never measured fails at the deadline", DeviceHealth{Online: true, Alloc: running, Checks: append(pass[:2:2], CheckResult{Name: "fleetplan L3 version and metrics", Layer: 3, Status: "warning", Output: nm})}, 80 * time.Second, VerdictFail, 3, "not a pass) after 1m20s (deadline 1m10s)"},
		{"L4 critical", DeviceHealth{Online: true, Alloc: running, Checks: append(pass[:2:2], CheckResult{Name: "fleetplan L4 functional", Layer: 4, Status: "critical", Output: "label dog, want cat"})}, 20 * time.Second, VerdictFail, 4, "label dog"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := DefaultGate{}.Evaluate(p, rec, tt.h, switched.Add(tt.after))
			if v.Status != tt.want || v.Layer != tt.layer || !strings.Contains(v.Reason, tt.reason) {
				t.Fatalf("verdict %+v, want %s layer %d containing %q", v, tt.want, tt.layer, tt.reason)
			}
		})
	}
}

func TestCheckSummary(t *testing.T) {
	agentURL := "HTTP GET http://127.0.0.1:24834/v1/probe/functional?service=_nomad-task-c5ba1b06-bccb-29e0-8a18-3e3e12bb6ee1-group-edgeinfer-edgeinfer-http: 503 Service Unavailable Output: "
	tests := []struct {
		name, status, output, want string
	}{
		{"agent probe: its own verdict", "critical", agentURL + "critical: http-json POST /infer: 200 OK in 3ms (max 250ms); label = \"dog\", expected \"cat\"\n",
			`http-json POST /infer: 200 OK in 3ms (max 250ms); label = "dog", expected "cat"`},
		{"agent probe: more lines", "critical", agentURL + "critical: unhealthy; version 2.0.0\nhealth: {}\nmetrics: {}\n", "unhealthy; version 2.0.0"},
		{"application body keeps the HTTP status", "critical", `HTTP GET http://127.0.0.3:20123/health: 503 Service Unavailable Output: {"status":"unhealthy","version":"2.0.0"}`,
			`503 Service Unavailable: {"status":"unhealthy","version":"2.0.0"}`},
		{"empty body", "critical", "HTTP GET http://127.0.0.3:20123/health: 500 Internal Server Error Output: ", "500 Internal Server Error"},
		{"connection error", "critical", `Get "http://127.0.0.3:20123/health": dial tcp 127.0.0.3:20123: connect: connection refused`,
			`Get "http://127.0.0.3:20123/health": dial tcp 127.0.0.3:20123: connect: connection refused`},
		{"not HTTP", "critical", "TTL expired", "TTL expired"},
		{"no output", "critical", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := checkSummary(tt.status, tt.output); got != tt.want {
				t.Errorf("checkSummary =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	// The gate's reason names the wrong field even behind a long URL.
	p := ctrlPolicy()
	rec := &DeviceRecord{SwitchedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	h := DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a", Status: "running"}, Checks: []CheckResult{
		{Name: "fleetplan L3 application", Layer: 3, Status: "passing"},
		{Name: "fleetplan L4 functional", Layer: 4, Status: "critical", Output: agentURL + "critical: http-json POST /infer: 200 OK in 3ms (max 250ms); label = \"dog\", expected \"cat\"\n"},
	}}
	v := DefaultGate{}.Evaluate(p, rec, h, rec.SwitchedAt.Add(time.Minute))
	if want := `check "fleetplan L4 functional" is critical: http-json POST /infer: 200 OK in 3ms (max 250ms); label = "dog", expected "cat"`; v.Status != VerdictFail || v.Layer != 4 || v.Reason != want {
		t.Errorf("verdict %+v, want fail at layer 4 with reason %q", v, want)
	}
}

func TestSameVersion(t *testing.T) {
	for _, tt := range []struct {
		reported, want string
		same           bool
	}{
		{"1.0.0", "1.0.0", true},
		{"v1.0.0", "1.0.0", true},
		{"1.0.0+r20261201T101010", "1.0.0", true},
		{"V2.1.0+build.7", "v2.1.0", true},
		{" 1.0.0\n", "1.0.0", true},
		{"1.0.0-rc1", "1.0.0", false},
		{"1.0.1", "1.0.0", false},
		{"version", "1.0.0", false},
		{"v", "v", true},
	} {
		if got := SameVersion(tt.reported, tt.want); got != tt.same {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", tt.reported, tt.want, got, tt.same)
		}
	}
}

// TestConnectivityIsNotAVerdict: a critical layer 1 check (the device's
// node agents going away, a power loss) keeps the device pending — offline
// evidence — instead of failing the release (the fault suite's power-off
// trial, seed 703, rolled a good release back on it).
func TestConnectivityIsNotAVerdict(t *testing.T) {
	p := &Policy{Release: Release{Version: "2.0.0"}, Health: Health{Grace: time.Second, Application: Application{MaxRestarts: 2}}}
	rec := &DeviceRecord{SwitchedAt: time.Unix(0, 0)}
	h := DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "a1", Status: "running"}, Checks: []CheckResult{
		{Name: "fleetplan L3 application", Layer: 3, Status: "passing"},
		{Name: "fleetplan L1 connectivity", Layer: 1, Status: "critical", Output: "the Nomad client does not answer"},
	}}
	v := DefaultGate{}.Evaluate(p, rec, h, time.Unix(30, 0))
	if v.Status != VerdictPending || v.Layer != 1 {
		t.Fatalf("verdict %+v, want pending at layer 1", v)
	}
}
