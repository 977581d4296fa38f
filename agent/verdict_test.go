package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
)

func TestJudgeBoundaries(t *testing.T) {
	for _, c := range []struct {
		value, limit float64
		want         plugin.Status
	}{
		{0, 90, Passing},
		{84.9, 90, Passing},
		{85, 90, Warning}, // exactly 5 points below: warning
		{89.9, 90, Warning},
		{90, 90, Critical}, // at the limit: critical
		{95, 90, Critical},
		{100, 0, Passing}, // no limit: not checked
		{3, 4, Warning},   // a limit under the margin warns from 0
	} {
		if got := Judge(c.value, c.limit); got != c.want {
			t.Errorf("Judge(%v, %v) = %s, want %s", c.value, c.limit, got, c.want)
		}
	}
	for st, code := range map[plugin.Status]int{Passing: 200, Warning: 429, Critical: 503, "bogus": 503} {
		if got := HTTPStatus(st); got != code {
			t.Errorf("HTTPStatus(%s) = %d, want %d", st, got, code)
		}
	}
}

func sample(cpu, mem, disk float64, temp *float64) SystemSample {
	s := SystemSample{
		CPUPercent: cpu, CPUKnown: true, CPUWindow: 15 * time.Second,
		MemoryPercent: mem, MemTotalKB: 8 << 20, MemAvailKB: 2 << 20,
		DiskPercent: disk, DiskPath: "/",
	}
	if temp != nil {
		s.TemperatureC, s.TempKnown, s.TempZone = *temp, true, "thermal_zone0"
	}
	return s
}

func TestSystemVerdict(t *testing.T) {
	hot, warm := 86.0, 80.5
	for _, c := range []struct {
		name  string
		s     SystemSample
		t     Thresholds
		want  plugin.Status
		lines []string
	}{
		{
			name: "all below", s: sample(12.34, 41, 71.2, nil), t: DefaultThresholds, want: Passing,
			lines: []string{
				"passing: cpu, memory, disk and temperature are below their limits",
				"cpu 12.3% (limit 90%, warning from 85%; average over 15s): ok",
				"memory 41.0% (limit 90%, warning from 85%; 2.0 of 8.0 GiB available): ok",
				"disk 71.2% (limit 95%, warning from 90%; of /): ok",
				"temperature n/a (limit 85°C; no thermal zone on this device)",
			},
		},
		{
			name: "cpu near its limit", s: sample(87.5, 41, 10, nil), t: DefaultThresholds, want: Warning,
			lines: []string{
				"warning: cpu 87.5% is within 5 points of its limit 90%",
				"cpu 87.5% (limit 90%, warning from 85%; average over 15s): WARNING",
			},
		},
		{
			name: "memory at its limit and disk near", s: sample(10, 90, 92, nil), t: DefaultThresholds, want: Critical,
			lines: []string{
				"critical: memory 90.0% is at or above its limit 90%; disk 92.0% is within 5 points of its limit 95%",
				"memory 90.0% (limit 90%, warning from 85%; 2.0 of 8.0 GiB available): CRITICAL",
				"disk 92.0% (limit 95%, warning from 90%; of /): WARNING",
			},
		},
		{
			name: "too hot", s: sample(10, 10, 10, &hot), t: DefaultThresholds, want: Critical,
			lines: []string{
				"critical: temperature 86.0°C is at or above its limit 85°C",
				"temperature 86.0°C in thermal_zone0 (limit 85°C, warning from 80°C): CRITICAL",
			},
		},
		{
			name: "warm", s: sample(10, 10, 10, &warm), t: DefaultThresholds, want: Warning,
			lines: []string{"temperature 80.5°C in thermal_zone0 (limit 85°C, warning from 80°C): WARNING"},
		},
		{
			name: "stricter policy", s: sample(72, 10, 10, nil), t: Thresholds{CPUPercent: 70, MemoryPercent: 90, DiskPercent: 95, TemperatureC: 85}, want: Critical,
			lines: []string{"cpu 72.0% (limit 70%, warning from 65%; average over 15s): CRITICAL"},
		},
		{
			name: "cpu not measured yet", s: func() SystemSample { s := sample(0, 10, 10, nil); s.CPUKnown = false; return s }(), t: DefaultThresholds, want: Passing,
			lines: []string{"cpu n/a (limit 90%; measuring, no second reading yet)"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := SystemVerdict(c.s, c.t)
			if st != c.want {
				t.Errorf("status = %s, want %s\n%s", st, c.want, out)
			}
			got := strings.Split(out, "\n")
			if got[0] != c.lines[0] && !strings.Contains(out, c.lines[0]+"\n") {
				t.Errorf("first line = %q, want %q", got[0], c.lines[0])
			}
			for _, l := range c.lines {
				if !strings.Contains(out, l+"\n") {
					t.Errorf("output lacks line %q:\n%s", l, out)
				}
			}
			if strings.Count(out, "\n") != 5 {
				t.Errorf("want a summary and four metric lines:\n%s", out)
			}
		})
	}
}

func TestStrictestThresholds(t *testing.T) {
	if got := StrictestThresholds(nil); got != DefaultThresholds {
		t.Errorf("no apps: %+v, want the defaults", got)
	}
	apps := []*AppConfig{
		{App: "a", System: &SystemThresholds{MaxCPUPercent: 80, MaxDiskPercent: 97}},
		{App: "b", System: &SystemThresholds{MaxCPUPercent: 85, MaxMemoryPercent: 70}},
		{App: "c"}, // no system block
	}
	want := Thresholds{CPUPercent: 80, MemoryPercent: 70, DiskPercent: 97, TemperatureC: 85}
	if got := StrictestThresholds(apps); got != want {
		t.Errorf("StrictestThresholds = %+v, want %+v", got, want)
	}
	if got := StrictestHeartbeatTimeout([]*AppConfig{{HeartbeatTimeout: Duration(30 * time.Second)}, {}, {HeartbeatTimeout: Duration(10 * time.Second)}}); got != 10*time.Second {
		t.Errorf("StrictestHeartbeatTimeout = %s, want 10s", got)
	}
	notes := SystemNotes(want)
	for _, s := range []string{"cpu >= 80%", "memory >= 70%", "disk >= 97%", "temperature >= 85°C", "within 5 points"} {
		if !strings.Contains(notes, s) {
			t.Errorf("notes %q lack %q", notes, s)
		}
	}
}

func TestParseThresholds(t *testing.T) {
	got, err := ParseThresholds("cpu=off, memory=80%,temperature=70")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Thresholds{CPUPercent: -1, MemoryPercent: 80, DiskPercent: 95, TemperatureC: 70}); got != want {
		t.Errorf("ParseThresholds = %+v, want %+v", got, want)
	}
	if d, err := ParseThresholds(""); err != nil || d != DefaultThresholds {
		t.Errorf("ParseThresholds(\"\") = %+v, %v", d, err)
	}
	for _, bad := range []string{"cpu", "gpu=5", "cpu=-3", "disk=lots"} {
		if _, err := ParseThresholds(bad); err == nil {
			t.Errorf("ParseThresholds(%q): no error", bad)
		}
	}
	// Off by default, but a policy that sets it wins.
	apps := []*AppConfig{{System: &SystemThresholds{MaxMemoryPercent: 60}}}
	if m := strictestThresholds(apps, got); m.CPUPercent != -1 || m.MemoryPercent != 60 {
		t.Errorf("strictest with defaults %+v = %+v", got, m)
	}
	if m := strictestThresholds([]*AppConfig{{System: &SystemThresholds{MaxCPUPercent: 95}}}, got); m.CPUPercent != 95 {
		t.Errorf("a policy's cpu limit should apply over an off default: %+v", m)
	}
	st, out := SystemVerdict(sample(99.8, 10, 10, nil), got)
	if st != Passing || !strings.Contains(out, "cpu 99.8% (not checked; average over 15s): ok\n") {
		t.Errorf("cpu off: %s\n%s", st, out)
	}
	if n := SystemNotes(got); !strings.Contains(n, "critical when cpu not checked, memory >= 80%, disk >= 95%, temperature >= 70°C") {
		t.Errorf("notes = %q", n)
	}
}
