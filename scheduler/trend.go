package scheduler

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Sample is one measurement of a metric at a time.
type Sample struct {
	At    time.Time `json:"t"`
	Value float64   `json:"v"`
}

// Trend is a least-squares line through a metric's samples.
type Trend struct {
	// Slope is the change per second; Intercept the value at the first
	// sample; R2 how well the line fits (1 = a perfect line).
	Slope     float64
	Intercept float64
	R2        float64
	N         int
	First     time.Time
	Last      time.Time
}

// FitTrend fits a line through the samples; it needs at least three.
func FitTrend(samples []Sample) (Trend, bool) {
	n := len(samples)
	if n < 3 {
		return Trend{}, false
	}
	t0 := samples[0].At
	var sx, sy, sxx, sxy, syy float64
	for _, s := range samples {
		x := s.At.Sub(t0).Seconds()
		sx += x
		sy += s.Value
		sxx += x * x
		sxy += x * s.Value
		syy += s.Value * s.Value
	}
	fn := float64(n)
	den := fn*sxx - sx*sx
	if den == 0 {
		return Trend{}, false
	}
	slope := (fn*sxy - sx*sy) / den
	icept := (sy - slope*sx) / fn
	// Coefficient of determination.
	mean := sy / fn
	var ssTot, ssRes float64
	for _, s := range samples {
		x := s.At.Sub(t0).Seconds()
		pred := icept + slope*x
		ssRes += (s.Value - pred) * (s.Value - pred)
		ssTot += (s.Value - mean) * (s.Value - mean)
	}
	r2 := 1.0
	if ssTot > 0 {
		r2 = 1 - ssRes/ssTot
	}
	return Trend{Slope: slope, Intercept: icept, R2: r2, N: n, First: t0, Last: samples[n-1].At}, true
}

// At projects the trend's value at time t.
func (t Trend) At(at time.Time) float64 {
	return t.Intercept + t.Slope*at.Sub(t.First).Seconds()
}

// MinTrendFit is the R² below which a trend is noise, not degradation.
const MinTrendFit = 0.8

// Degradation is a metric of one device projected to cross its limit.
type Degradation struct {
	Device    string
	Metric    string
	Unit      string
	Slope     float64 // per second
	R2        float64
	Now       float64
	Projected float64
	Limit     float64
	Horizon   time.Duration
}

func (d Degradation) String() string {
	return fmt.Sprintf("%s on %s grows %.3g %s/s (R²=%.2f): %.4g %s now, projected %.4g %s in %s, above the limit %.4g %s",
		d.Metric, d.Device, d.Slope, d.Unit, d.R2, d.Now, d.Unit, d.Projected, d.Unit, d.Horizon, d.Limit, d.Unit)
}

// TrendSamples are one canary device's samples during its soak. They live
// on the device record, persisted with it (I7: a restarted controller
// judges the same trend, not a shorter one).
type TrendSamples struct {
	Memory      []Sample `json:"memory,omitempty"`
	Latency     []Sample `json:"latency,omitempty"`
	CPU         []Sample `json:"cpu,omitempty"`
	Temperature []Sample `json:"temperature,omitempty"`
	// SavedAt is when the samples were last persisted.
	SavedAt time.Time `json:"saved_at,omitempty"`
}

// maxTrendSamples bounds each metric's samples on a record (a soak of an
// hour sampled every 2 s would otherwise make a device record hundreds of
// KB): past it every other sample is dropped, which keeps the time span
// and halves the density.
const maxTrendSamples = 256

// add records a reading. A value equal to the metric's previous sample is
// not recorded again: check outputs reach the servers only every
// check_update_interval when the status does not change, so repeated
// readings are mostly the same measurement read again, and stamping it
// with each reading's time would draw a flat line (then a step) that no
// device measured.
func (s *TrendSamples) add(at time.Time, m *Metrics) {
	push := func(xs []Sample, v float64) []Sample {
		if n := len(xs); n > 0 && xs[n-1].Value == v {
			return xs
		}
		xs = append(xs, Sample{At: at, Value: v})
		if len(xs) > maxTrendSamples {
			thin := xs[:0]
			for i := 0; i < len(xs); i += 2 {
				thin = append(thin, xs[i])
			}
			xs = thin
		}
		return xs
	}
	if m.MemoryMB > 0 {
		s.Memory = push(s.Memory, m.MemoryMB)
	}
	if m.P95LatencyMS > 0 {
		s.Latency = push(s.Latency, m.P95LatencyMS)
	}
	if finite(m.CPUPercent) && m.CPUPercent > 0 {
		s.CPU = push(s.CPU, m.CPUPercent)
	}
	if m.TemperatureC > 0 {
		s.Temperature = push(s.Temperature, m.TemperatureC)
	}
}

// trendLimits returns each metric's limit for a device, from the policy and
// the device's own baseline: memory may not double (a leak), p95 latency may
// not rise by more than max_p95_latency_increase_percent over the baseline
// (or past functional.max_latency without a baseline), CPU and temperature
// may not pass the system thresholds. A zero limit is not checked.
func trendLimits(p *Policy, base *Metrics) (mem, lat, cpu, temp float64) {
	if base != nil && base.MemoryMB > 0 {
		mem = 2 * base.MemoryMB
	}
	if base != nil && base.P95LatencyMS > 0 && p.Rollback.MaxP95LatencyIncreasePercent > 0 {
		lat = base.P95LatencyMS * (1 + p.Rollback.MaxP95LatencyIncreasePercent/100)
		if lat < base.P95LatencyMS+minLatencyIncreaseMS {
			lat = base.P95LatencyMS + minLatencyIncreaseMS
		}
	} else if p.Health.Functional != nil && p.Health.Functional.MaxLatency > 0 {
		lat = float64(p.Health.Functional.MaxLatency.Milliseconds())
	}
	if p.Health.System != nil {
		cpu = p.Health.System.MaxCPUPercent
		temp = p.Health.System.MaxTemperatureC
	}
	return
}

// DetectDegradation fits a trend per metric and device and returns the ones
// projected past their limit within horizon, worst first.
func DetectDegradation(p *Policy, recs []*DeviceRecord, now time.Time, horizon time.Duration) []Degradation {
	var out []Degradation
	for _, rec := range recs {
		s := rec.Trend
		if s == nil {
			continue
		}
		mem, lat, cpu, temp := trendLimits(p, rec.Baseline)
		check := func(name, unit string, samples []Sample, limit float64) {
			if limit <= 0 {
				return
			}
			tr, ok := FitTrend(samples)
			if !ok || tr.Slope <= 0 || tr.R2 < MinTrendFit {
				return
			}
			proj := tr.At(now.Add(horizon))
			if proj > limit {
				out = append(out, Degradation{Device: rec.Name, Metric: name, Unit: unit, Slope: tr.Slope, R2: tr.R2,
					Now: tr.At(now), Projected: proj, Limit: limit, Horizon: horizon})
			}
		}
		check("memory", "MB", s.Memory, mem)
		check("p95 latency", "ms", s.Latency, lat)
		check("cpu", "%", s.CPU, cpu)
		check("temperature", "°C", s.Temperature, temp)
	}
	sort.Slice(out, func(i, j int) bool {
		ri, rj := out[i].Projected/out[i].Limit, out[j].Projected/out[j].Limit
		if ri != rj {
			return ri > rj
		}
		return out[i].Device+out[i].Metric < out[j].Device+out[j].Metric
	})
	return out
}

func describeDegradations(ds []Degradation) string {
	parts := make([]string, 0, len(ds))
	for i, d := range ds {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ds)-3))
			break
		}
		parts = append(parts, d.String())
	}
	return strings.Join(parts, "; ")
}

// minLatencyIncreaseMS ignores latency increases too small to matter
// (a 1 ms baseline doubling to 2 ms is noise, not a regression).
const minLatencyIncreaseMS = 5.0

// MetricsVerdict checks one device's measurements against the rollback
// thresholds: its error rate, and its p95 latency against its own
// pre-switch baseline.
func MetricsVerdict(p *Policy, rec *DeviceRecord, m *Metrics) (Verdict, bool) {
	if m == nil {
		return Verdict{}, false
	}
	if max := p.Rollback.MaxErrorRate; max > 0 && m.ErrorRate > max {
		return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("error rate %.3f > max_error_rate %g", m.ErrorRate, max)}, true
	}
	if max := p.Rollback.MaxP95LatencyIncreasePercent; max > 0 && rec.Baseline != nil && rec.Baseline.P95LatencyMS > 0 && m.P95LatencyMS > 0 {
		base := rec.Baseline.P95LatencyMS
		inc := (m.P95LatencyMS - base) * 100 / base
		if inc > max && m.P95LatencyMS-base >= minLatencyIncreaseMS {
			return Verdict{Status: VerdictFail, Layer: 4, Reason: fmt.Sprintf("p95 latency %.1f ms vs %.1f ms before the switch (%+.0f%% > max_p95_latency_increase_percent %g)", m.P95LatencyMS, base, inc, max)}, true
		}
	}
	return Verdict{}, false
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
