package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cpuTimes is the aggregate "cpu" line of /proc/stat, in clock ticks.
type cpuTimes struct {
	// Idle counts idle and iowait; Total counts every field up to steal
	// (guest time is already part of user and nice).
	Idle, Total uint64
}

// parseProcStat reads the aggregate cpu line of /proc/stat.
func parseProcStat(b []byte) (cpuTimes, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 5 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: cpu line has %d fields, want at least 4 values", len(f)-1)
		}
		var t cpuTimes
		// user nice system idle iowait irq softirq steal guest guest_nice
		for i, s := range f[1:] {
			if i >= 8 {
				break
			}
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat: cpu field %d %q: %w", i+1, s, err)
			}
			t.Total += v
			if i == 3 || i == 4 {
				t.Idle += v
			}
		}
		return t, nil
	}
	if err := sc.Err(); err != nil {
		return cpuTimes{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return cpuTimes{}, errors.New("/proc/stat: no aggregate cpu line")
}

// cpuPercent is the busy share between two readings, 0..100; ok is false
// when no time passed between them (or the counters went backwards).
func cpuPercent(prev, cur cpuTimes) (float64, bool) {
	if cur.Total <= prev.Total || cur.Idle < prev.Idle {
		return 0, false
	}
	total := float64(cur.Total - prev.Total)
	idle := float64(cur.Idle - prev.Idle)
	if idle > total {
		idle = total
	}
	return 100 * (total - idle) / total, true
}

// memInfo is what /proc/meminfo says, in kB.
type memInfo struct {
	TotalKB, AvailableKB uint64
}

// UsedPercent is 100 * (total - available) / total.
func (m memInfo) UsedPercent() float64 {
	if m.TotalKB == 0 {
		return 0
	}
	used := float64(m.TotalKB) - float64(m.AvailableKB)
	if used < 0 {
		used = 0
	}
	return 100 * used / float64(m.TotalKB)
}

// parseMeminfo reads MemTotal and MemAvailable. Kernels before 3.14 have no
// MemAvailable: MemFree + Buffers + Cached stands in for it.
func parseMeminfo(b []byte) (memInfo, error) {
	vals := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return memInfo{}, fmt.Errorf("/proc/meminfo: %s %q: %w", name, f[0], err)
		}
		vals[name] = v
	}
	if err := sc.Err(); err != nil {
		return memInfo{}, fmt.Errorf("/proc/meminfo: %w", err)
	}
	m := memInfo{TotalKB: vals["MemTotal"]}
	if m.TotalKB == 0 {
		return memInfo{}, errors.New("/proc/meminfo: no MemTotal")
	}
	if v, ok := vals["MemAvailable"]; ok {
		m.AvailableKB = v
	} else {
		m.AvailableKB = vals["MemFree"] + vals["Buffers"] + vals["Cached"]
	}
	if m.AvailableKB > m.TotalKB {
		m.AvailableKB = m.TotalKB
	}
	return m, nil
}

// diskUsedPercent is the share of the file system holding path that is
// used, as df counts it: used / (used + available to unprivileged users).
func diskUsedPercent(path string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	return diskPercent(st.Blocks, st.Bfree, st.Bavail), nil
}

func diskPercent(blocks, free, avail uint64) float64 {
	if blocks == 0 || free > blocks {
		return 0
	}
	used := blocks - free
	if used+avail == 0 {
		return 0
	}
	return 100 * float64(used) / float64(used+avail)
}

// maxTemperature reads every <sysRoot>/class/thermal/thermal_zone*/temp
// (millidegrees Celsius) and returns the highest, with its zone. ok is
// false when the device has no readable thermal zone.
func maxTemperature(sysRoot string) (celsius float64, zone string, ok bool) {
	paths, _ := filepath.Glob(filepath.Join(sysRoot, "class", "thermal", "thermal_zone*", "temp"))
	sort.Strings(paths)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		if err != nil {
			continue
		}
		c := v / 1000
		// Some drivers report a sentinel (-273.2 or less) when they cannot read.
		if c < -200 {
			continue
		}
		if !ok || c > celsius {
			celsius, zone, ok = c, filepath.Base(filepath.Dir(p)), true
		}
	}
	return celsius, zone, ok
}

// SystemSample is one measurement of the device.
type SystemSample struct {
	Time time.Time
	// CPUPercent is averaged over CPUWindow; CPUKnown is false until two
	// readings of /proc/stat are apart.
	CPUPercent    float64
	CPUKnown      bool
	CPUWindow     time.Duration
	MemoryPercent float64
	MemTotalKB    uint64
	MemAvailKB    uint64
	DiskPercent   float64
	DiskPath      string
	// TemperatureC is the hottest thermal zone; TempKnown is false when
	// the device has none ("n/a").
	TemperatureC float64
	TempKnown    bool
	TempZone     string
	// Errors lists what could not be measured; a metric that could not be
	// read is critical (the agent cannot vouch for it).
	Errors []string
}

// cpuReading is one /proc/stat reading.
type cpuReading struct {
	at time.Time
	t  cpuTimes
}

// systemSampler measures the device from /proc, statfs and /sys. CPU usage
// is the average since the oldest reading within the window (readings are
// taken when a probe asks, at most every minGap), so that a short burst
// does not fail a device.
type systemSampler struct {
	procRoot string
	sysRoot  string
	diskPath string
	window   time.Duration
	minGap   time.Duration
	now      func() time.Time

	mu       sync.Mutex
	readings []cpuReading
	last     SystemSample
}

func newSystemSampler(procRoot, sysRoot, diskPath string, window time.Duration, now func() time.Time) *systemSampler {
	return &systemSampler{
		procRoot: procRoot, sysRoot: sysRoot, diskPath: diskPath,
		window: window, minGap: 500 * time.Millisecond, now: now,
	}
}

// Sample measures the device now (or returns the sample of less than
// minGap ago).
func (s *systemSampler) Sample() SystemSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if !s.last.Time.IsZero() && now.Sub(s.last.Time) < s.minGap && now.Sub(s.last.Time) >= 0 {
		return s.last
	}
	out := SystemSample{Time: now, DiskPath: s.diskPath}

	if b, err := os.ReadFile(filepath.Join(s.procRoot, "stat")); err != nil {
		out.Errors = append(out.Errors, "cpu: "+err.Error())
	} else if t, err := parseProcStat(b); err != nil {
		out.Errors = append(out.Errors, "cpu: "+err.Error())
	} else {
		out.CPUPercent, out.CPUWindow, out.CPUKnown = s.addCPU(now, t)
	}

	if b, err := os.ReadFile(filepath.Join(s.procRoot, "meminfo")); err != nil {
		out.Errors = append(out.Errors, "memory: "+err.Error())
	} else if m, err := parseMeminfo(b); err != nil {
		out.Errors = append(out.Errors, "memory: "+err.Error())
	} else {
		out.MemoryPercent, out.MemTotalKB, out.MemAvailKB = m.UsedPercent(), m.TotalKB, m.AvailableKB
	}

	if p, err := diskUsedPercent(s.diskPath); err != nil {
		out.Errors = append(out.Errors, "disk: "+err.Error())
	} else {
		out.DiskPercent = p
	}

	out.TemperatureC, out.TempZone, out.TempKnown = maxTemperature(s.sysRoot)
	s.last = out
	return out
}

// addCPU records a reading and returns the usage since the oldest reading
// kept: the newest one at least window old, so the average spans about the
// window once the agent has run that long.
func (s *systemSampler) addCPU(now time.Time, t cpuTimes) (float64, time.Duration, bool) {
	// A clock or counter that went backwards (a restored VM) starts over.
	if n := len(s.readings); n > 0 && (now.Before(s.readings[n-1].at) || t.Total < s.readings[n-1].t.Total) {
		s.readings = nil
	}
	s.readings = append(s.readings, cpuReading{at: now, t: t})
	cut := 0
	for i, r := range s.readings {
		if now.Sub(r.at) >= s.window {
			cut = i
		}
	}
	s.readings = s.readings[cut:]
	if len(s.readings) < 2 {
		return 0, 0, false
	}
	base := s.readings[0]
	p, ok := cpuPercent(base.t, t)
	if !ok {
		return 0, 0, false
	}
	return p, now.Sub(base.at), true
}

// round1 rounds to one decimal, for outputs and JSON.
func round1(v float64) float64 { return math.Round(v*10) / 10 }
