package agent

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readFixture(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseProcStat(t *testing.T) {
	got, err := parseProcStat(readFixture(t, "proc/stat"))
	if err != nil {
		t.Fatal(err)
	}
	// user nice system idle iowait irq softirq steal: idle = idle + iowait.
	if want := (cpuTimes{Idle: 81000, Total: 95000}); got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	later, err := parseProcStat(readFixture(t, "proc-t2/stat"))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := cpuPercent(got, later)
	if !ok || math.Abs(p-75) > 1e-9 {
		t.Errorf("cpuPercent = %v, %v; want 75 (750 busy of 1000 ticks)", p, ok)
	}
	if _, ok := cpuPercent(later, got); ok {
		t.Error("cpuPercent with counters going backwards should not be known")
	}
	if _, ok := cpuPercent(got, got); ok {
		t.Error("cpuPercent with no time between readings should not be known")
	}

	for name, in := range map[string]string{
		"no cpu line":  "cpu0 1 2 3 4\nintr 5\n",
		"short line":   "cpu  1 2 3\n",
		"not a number": "cpu  1 2 x 4 5\n",
		"empty":        "",
	} {
		if _, err := parseProcStat([]byte(in)); err == nil {
			t.Errorf("%s: parseProcStat(%q) gave no error", name, in)
		}
	}
	// Old kernels have only four values.
	if got, err := parseProcStat([]byte("cpu 1 2 3 4\n")); err != nil || got != (cpuTimes{Idle: 4, Total: 10}) {
		t.Errorf("four-value cpu line: %+v, %v", got, err)
	}
}

func TestParseMeminfo(t *testing.T) {
	m, err := parseMeminfo(readFixture(t, "proc/meminfo"))
	if err != nil {
		t.Fatal(err)
	}
	if m.TotalKB != 8000000 || m.AvailableKB != 2000000 || m.UsedPercent() != 75 {
		t.Errorf("meminfo = %+v (%.1f%%), want total 8000000, available 2000000, 75%%", m, m.UsedPercent())
	}
	// Without MemAvailable: MemFree + Buffers + Cached.
	old, err := parseMeminfo(readFixture(t, "proc-oldkernel/meminfo"))
	if err != nil {
		t.Fatal(err)
	}
	if old.AvailableKB != 1000000 || old.UsedPercent() != 75 {
		t.Errorf("old kernel meminfo = %+v (%.1f%%), want available 1000000, 75%%", old, old.UsedPercent())
	}
	if _, err := parseMeminfo([]byte("MemFree: 10 kB\n")); err == nil {
		t.Error("meminfo without MemTotal: no error")
	}
	if _, err := parseMeminfo([]byte("MemTotal: lots kB\n")); err == nil {
		t.Error("meminfo with a bad number: no error")
	}
}

func TestDiskPercent(t *testing.T) {
	for _, c := range []struct {
		blocks, free, avail uint64
		want                float64
	}{
		{1000, 500, 500, 50},
		// Reserved blocks: 100 free only to root, so 400 used of 400+400.
		{1000, 600, 500, 44.44444444444444},
		{1000, 0, 0, 100},
		{0, 0, 0, 0},
	} {
		if got := diskPercent(c.blocks, c.free, c.avail); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("diskPercent(%d, %d, %d) = %v, want %v", c.blocks, c.free, c.avail, got, c.want)
		}
	}
	p, err := diskUsedPercent(t.TempDir())
	if err != nil || p < 0 || p > 100 {
		t.Errorf("diskUsedPercent(tempdir) = %v, %v", p, err)
	}
	if _, err := diskUsedPercent(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("diskUsedPercent of a missing path: no error")
	}
}

func TestMaxTemperature(t *testing.T) {
	c, zone, ok := maxTemperature(filepath.Join("testdata", "sys"))
	// thermal_zone2 reports the "cannot read" sentinel and is skipped.
	if !ok || c != 71.25 || zone != "thermal_zone1" {
		t.Errorf("maxTemperature = %v, %q, %v; want 71.25 in thermal_zone1", c, zone, ok)
	}
	if _, _, ok := maxTemperature(filepath.Join("testdata", "sys-none")); ok {
		t.Error("a device without thermal zones reported a temperature")
	}
}

// TestSystemSampler drives the sampler with a fake /proc and clock: CPU
// is unknown until a second reading, then averaged from the oldest reading
// within the window.
func TestSystemSampler(t *testing.T) {
	proc := t.TempDir()
	write := func(fixture string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(proc, "stat"), readFixture(t, fixture), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("proc/stat")
	if err := os.WriteFile(filepath.Join(proc, "meminfo"), readFixture(t, "proc/meminfo"), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	s := newSystemSampler(proc, filepath.Join("testdata", "sys"), t.TempDir(), 15*time.Second, func() time.Time { return now })

	first := s.Sample()
	if first.CPUKnown {
		t.Errorf("first sample knows the CPU: %+v", first)
	}
	if first.MemoryPercent != 75 || !first.TempKnown || first.TemperatureC != 71.25 || len(first.Errors) != 0 {
		t.Errorf("first sample = %+v", first)
	}

	// Within minGap: the same sample.
	now = now.Add(100 * time.Millisecond)
	write("proc-t2/stat")
	if again := s.Sample(); again.Time != first.Time {
		t.Errorf("a sample within minGap was taken again")
	}

	now = now.Add(10 * time.Second)
	second := s.Sample()
	if !second.CPUKnown || second.CPUPercent != 75 || second.CPUWindow != 10*time.Second+100*time.Millisecond {
		t.Errorf("second sample cpu = %v known=%v over %s; want 75 over 10.1s", second.CPUPercent, second.CPUKnown, second.CPUWindow)
	}

	// Unreadable /proc: reported as errors, which the verdict makes critical.
	broken := newSystemSampler(filepath.Join(t.TempDir(), "missing"), "testdata/sys-none", "/", time.Second, time.Now)
	bs := broken.Sample()
	if len(bs.Errors) != 2 || !strings.HasPrefix(bs.Errors[0], "cpu: ") || !strings.HasPrefix(bs.Errors[1], "memory: ") {
		t.Errorf("broken sampler errors = %q", bs.Errors)
	}
	if st, out := SystemVerdict(bs, DefaultThresholds); st != Critical || !strings.Contains(out, "cannot measure cpu") {
		t.Errorf("verdict of an unreadable /proc = %s\n%s", st, out)
	}
}

func TestSamplerWindowKeepsOneOldReading(t *testing.T) {
	s := &systemSampler{window: 10 * time.Second}
	base := time.Unix(0, 0)
	var p float64
	var w time.Duration
	var ok bool
	// One reading every 5 s, each 100 ticks of which 50 busy, except the
	// last interval, fully busy.
	for i := 0; i <= 6; i++ {
		tt := cpuTimes{Total: uint64(100 * i), Idle: uint64(50 * i)}
		if i == 6 {
			tt.Idle = 50 * 5
		}
		p, w, ok = s.addCPU(base.Add(time.Duration(i)*5*time.Second), tt)
	}
	// The window is 10 s: the baseline is the reading at 20 s (i=4).
	if !ok || w != 10*time.Second || p != 75 {
		t.Errorf("addCPU = %v over %s (%v); want 75 over 10s", p, w, ok)
	}
	if len(s.readings) != 3 {
		t.Errorf("kept %d readings, want 3", len(s.readings))
	}
	// Counters going backwards (a restored VM) start over.
	if _, _, ok := s.addCPU(base.Add(40*time.Second), cpuTimes{Total: 10, Idle: 5}); ok {
		t.Error("after counters went backwards the CPU should be unknown")
	}
}
