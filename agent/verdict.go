package agent

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/fleetplan/fleetplan/plugin"
)

// WarnMargin is how close to a layer 2 threshold a measurement warns: 5
// percentage points (5 °C for the temperature).
const WarnMargin = 5.0

// Verdicts, in Consul's check states.
const (
	Passing  = plugin.StatusPassing
	Warning  = plugin.StatusWarning
	Critical = plugin.StatusCritical
)

// HTTPStatus is the code a probe endpoint answers for a verdict; Consul's
// HTTP checks read 2xx as passing, 429 as warning and anything else as
// critical.
func HTTPStatus(s plugin.Status) int {
	switch s {
	case Passing:
		return http.StatusOK
	case Warning:
		return http.StatusTooManyRequests
	default:
		return http.StatusServiceUnavailable
	}
}

// worse returns the more severe of two verdicts.
func worse(a, b plugin.Status) plugin.Status {
	rank := func(s plugin.Status) int {
		switch s {
		case Passing:
			return 0
		case Warning:
			return 1
		default:
			return 2
		}
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Judge compares a measurement with its limit: critical at or above the
// limit, warning within WarnMargin below it, passing under that. A limit of
// 0 or less is not checked.
func Judge(value, limit float64) plugin.Status {
	switch {
	case limit <= 0:
		return Passing
	case value >= limit:
		return Critical
	case value >= limit-WarnMargin:
		return Warning
	default:
		return Passing
	}
}

// word is how a verdict reads in an output line.
func word(s plugin.Status) string {
	switch s {
	case Passing:
		return "ok"
	case Warning:
		return "WARNING"
	default:
		return "CRITICAL"
	}
}

// SystemVerdict judges a sample against the thresholds and writes the
// layer 2 output: a summary line, then one line per metric with the
// measurement, the limit and the verdict.
//
//	warning: cpu 87.5% is within 5 points of its limit 90%
//	cpu 87.5% (limit 90%, warning from 85%; average over 15s): WARNING
//	memory 41.0% (limit 90%, warning from 85%; 9.4 of 15.9 GiB available): ok
//	disk 71.2% of / (limit 95%, warning from 90%): ok
//	temperature n/a (limit 85°C; no thermal zone on this device)
func SystemVerdict(s SystemSample, t Thresholds) (plugin.Status, string) {
	status := Passing
	var lines, problems []string
	pct := func(name string, v, limit float64, known bool, extra string) {
		if !known {
			lines = append(lines, fmt.Sprintf("%s n/a (%s; %s)", name, limitText(limit, "%"), extra))
			return
		}
		v = round1(v)
		st := Judge(v, limit)
		status = worse(status, st)
		lim := "not checked"
		if limit > 0 {
			lim = fmt.Sprintf("limit %s%%, warning from %s%%", num(limit), num(limit-WarnMargin))
		}
		if extra != "" {
			lim += "; " + extra
		}
		lines = append(lines, fmt.Sprintf("%s %.1f%% (%s): %s", name, v, lim, word(st)))
		switch st {
		case Critical:
			problems = append(problems, fmt.Sprintf("%s %.1f%% is at or above its limit %s%%", name, v, num(limit)))
		case Warning:
			problems = append(problems, fmt.Sprintf("%s %.1f%% is within %s points of its limit %s%%", name, v, num(WarnMargin), num(limit)))
		}
	}

	measuring := "measuring, no second reading yet"
	if s.CPUKnown {
		measuring = fmt.Sprintf("average over %s", s.CPUWindow.Round(1e9))
	}
	pct("cpu", s.CPUPercent, t.CPUPercent, s.CPUKnown, measuring)
	memExtra := ""
	if s.MemTotalKB > 0 {
		memExtra = fmt.Sprintf("%.1f of %.1f GiB available", kbToGiB(s.MemAvailKB), kbToGiB(s.MemTotalKB))
	}
	pct("memory", s.MemoryPercent, t.MemoryPercent, s.MemTotalKB > 0, memExtra)
	pct("disk", s.DiskPercent, t.DiskPercent, !hasError(s.Errors, "disk:"), "of "+s.DiskPath)

	if s.TempKnown {
		v := round1(s.TemperatureC)
		st := Judge(v, t.TemperatureC)
		status = worse(status, st)
		lim := "not checked"
		if t.TemperatureC > 0 {
			lim = fmt.Sprintf("limit %s°C, warning from %s°C", num(t.TemperatureC), num(t.TemperatureC-WarnMargin))
		}
		lines = append(lines, fmt.Sprintf("temperature %.1f°C in %s (%s): %s", v, s.TempZone, lim, word(st)))
		switch st {
		case Critical:
			problems = append(problems, fmt.Sprintf("temperature %.1f°C is at or above its limit %s°C", v, num(t.TemperatureC)))
		case Warning:
			problems = append(problems, fmt.Sprintf("temperature %.1f°C is within %s degrees of its limit %s°C", v, num(WarnMargin), num(t.TemperatureC)))
		}
	} else {
		lines = append(lines, fmt.Sprintf("temperature n/a (%s; no thermal zone on this device)", limitText(t.TemperatureC, "°C")))
	}
	for _, e := range s.Errors {
		status = Critical
		problems = append(problems, "cannot measure "+e)
	}

	summary := "passing: cpu, memory, disk and temperature are below their limits"
	if len(problems) > 0 {
		summary = string(status) + ": " + strings.Join(problems, "; ")
	}
	return status, summary + "\n" + strings.Join(lines, "\n") + "\n"
}

func hasError(errs []string, prefix string) bool {
	for _, e := range errs {
		if strings.HasPrefix(e, prefix) {
			return true
		}
	}
	return false
}

func kbToGiB(kb uint64) float64 { return float64(kb) / (1 << 20) }

// num prints a threshold without needless decimals (90, 87.5).
func num(v float64) string { return fmt.Sprintf("%g", round1(v)) }

func limitText(limit float64, unit string) string {
	if limit <= 0 {
		return "not checked"
	}
	return "limit " + num(limit) + unit
}

// SystemNotes is the layer 2 check's Notes: the thresholds it applies.
func SystemNotes(t Thresholds) string {
	var crit []string
	for _, m := range []struct {
		name, unit string
		limit      float64
	}{{"cpu", "%", t.CPUPercent}, {"memory", "%", t.MemoryPercent}, {"disk", "%", t.DiskPercent}, {"temperature", "°C", t.TemperatureC}} {
		if m.limit > 0 {
			crit = append(crit, fmt.Sprintf("%s >= %s%s", m.name, num(m.limit), m.unit))
		} else {
			crit = append(crit, m.name+" not checked")
		}
	}
	return fmt.Sprintf("fleetplan device agent, layer 2: critical when %s; warning within %s points of a limit. CPU is averaged over about 15 s; per metric the strictest limit of the applications' policies on the device applies (defaults 90/90/95/85).",
		strings.Join(crit, ", "), num(WarnMargin))
}
