package agent

import (
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Edge-local verdicts: the agent judges the policy's metric triggers on
// the device, against the device's own pre-switch baseline, and reports
// them as the status of its layer 3 check with a short reason. Only status
// changes travel (Consul forwards a check's output change without a status
// change at most every check_update_interval); the numbers travel in the
// device summary (summary.go).

// Trend judgement.
const (
	// minTrendSamples is how many measurements a trend needs.
	minTrendSamples = 6
	// trendConfirm is how many consecutive measurements must project a
	// metric past its limit before the check fails (a trend, not a blip).
	trendConfirm = 3
	// minLatencyIncreaseMS ignores p95 increases too small to matter, as
	// the controller does.
	minLatencyIncreaseMS = 5.0
)

// finding is one trigger's verdict.
type finding struct {
	status plugin.Status
	reason string
	// latency findings belong to layer 4 when the instance has a
	// functional check (the controller's layering: the p95 is what the
	// functional probe's users see), else to layer 3.
	latency bool
}

// triggerInput is what judgeTriggers judges.
type triggerInput struct {
	cfg  *AppConfig
	node string
	cur  contract.Metrics
	// why the application's figures are missing, when they are.
	why         missing
	base        *contract.Metrics
	baseVersion string
	trend       instSnapshot
	now         time.Time
}

// judgeTriggers turns the policy's metric triggers into findings: the
// error rate over max_error_rate, the p95 latency over the baseline by
// more than max_p95_latency_increase_percent (or, without a baseline,
// over functional.max_latency), memory at twice the baseline, and a
// resource trend projected past its limit within the trend horizon
// (confirmed by trendConfirm consecutive measurements, hit counts them).
// A trigger whose figure is missing is a warning ("not measured"), never
// a pass.
func judgeTriggers(in triggerInput, hit func(metric string, crossed bool) int) []finding {
	cfg := in.cfg
	if cfg == nil {
		return nil
	}
	var out []finding
	notMeasured := func(what, trigger, why string) {
		if why == "" {
			why = "the metrics endpoint gives none"
		}
		out = append(out, finding{Warning, what + contract.NotMeasured + trigger + "): " + why, what == "p95 latency"})
	}
	cur := in.cur
	if max := cfg.MaxErrorRate; max > 0 {
		switch {
		case cur.ErrorRate == nil:
			notMeasured("error rate", fmt.Sprintf("max_error_rate %g", max), in.why.errorRate)
		case *cur.ErrorRate > max:
			out = append(out, finding{Critical, fmt.Sprintf("error rate %.3f > max_error_rate %g (rollback trigger)", *cur.ErrorRate, max), false})
		}
	}
	maxLat := 0.0
	if cfg.Functional != nil && cfg.Functional.MaxLatency > 0 {
		maxLat = float64(cfg.Functional.MaxLatency.D().Milliseconds())
	}
	if max := cfg.MaxP95LatencyIncreasePercent; max > 0 {
		switch {
		case in.base != nil && in.base.P95LatencyMS != nil && *in.base.P95LatencyMS > 0:
			base := *in.base.P95LatencyMS
			if cur.P95LatencyMS == nil {
				notMeasured("p95 latency", fmt.Sprintf("max_p95_latency_increase_percent %g", max), in.why.latency)
				break
			}
			p := *cur.P95LatencyMS
			inc := (p - base) * 100 / base
			if inc > max && p-base >= minLatencyIncreaseMS {
				out = append(out, finding{Critical, fmt.Sprintf("p95 latency %.1f ms vs %.1f ms of %s before the switch (%+.0f%% > max_p95_latency_increase_percent %g, rollback trigger)", p, base, in.baseVersion, inc, max), true})
			}
		case maxLat > 0:
			if cur.P95LatencyMS == nil {
				notMeasured("p95 latency", "functional max_latency, no pre-switch baseline on this device", in.why.latency)
				break
			}
			if p := *cur.P95LatencyMS; p > maxLat {
				out = append(out, finding{Critical, fmt.Sprintf("p95 latency %.1f ms > functional max_latency %s (no pre-switch baseline on this device)", p, cfg.Functional.MaxLatency), true})
			}
		}
	}
	memLimit := 0.0
	if in.base != nil && in.base.RSSMB != nil && *in.base.RSSMB > 0 {
		memLimit = 2 * *in.base.RSSMB
		if cur.RSSMB != nil && *cur.RSSMB >= memLimit {
			out = append(out, finding{Critical, fmt.Sprintf("memory %.1f MB, at least twice the %.1f MB of %s before the switch (degradation)", *cur.RSSMB, *in.base.RSSMB, in.baseVersion), false})
			memLimit = 0 // said already
		}
	}
	if h := cfg.TrendHorizon.D(); h > 0 {
		latLimit := maxLat
		if in.base != nil && in.base.P95LatencyMS != nil && *in.base.P95LatencyMS > 0 && cfg.MaxP95LatencyIncreasePercent > 0 {
			b := *in.base.P95LatencyMS
			latLimit = b * (1 + cfg.MaxP95LatencyIncreasePercent/100)
			if latLimit < b+minLatencyIncreaseMS {
				latLimit = b + minLatencyIncreaseMS
			}
		}
		var cpuLimit, tempLimit float64
		if cfg.System != nil {
			cpuLimit, tempLimit = cfg.System.MaxCPUPercent, cfg.System.MaxTemperatureC
		}
		check := func(name, unit string, samples []scheduler.Sample, limit float64) {
			if limit <= 0 {
				return
			}
			d, crossed := projectTrend(samples, limit, in.now, h)
			n := hit(name, crossed)
			if crossed && n >= trendConfirm {
				d.Device, d.Metric, d.Unit = in.node, name, unit
				out = append(out, finding{Critical, "gradual degradation: " + d.String(), name == "p95 latency"})
			}
		}
		check("memory", "MB", in.trend.mem, memLimit)
		check("p95 latency", "ms", in.trend.lat, latLimit)
		check("cpu", "%", in.trend.cpu, cpuLimit)
		check("temperature", "°C", in.trend.temp, tempLimit)
	}
	return out
}

// projectTrend fits the samples and reports whether the line, projected
// horizon ahead of now, passes the limit (a rising, well-fitting line).
func projectTrend(samples []scheduler.Sample, limit float64, now time.Time, horizon time.Duration) (scheduler.Degradation, bool) {
	if len(samples) < minTrendSamples {
		return scheduler.Degradation{}, false
	}
	tr, ok := scheduler.FitTrend(samples)
	if !ok || tr.Slope <= 0 || tr.R2 < scheduler.MinTrendFit {
		return scheduler.Degradation{}, false
	}
	proj := tr.At(now.Add(horizon))
	if proj <= limit {
		return scheduler.Degradation{}, false
	}
	return scheduler.Degradation{Slope: tr.Slope, R2: tr.R2, Now: tr.At(now), Projected: proj, Limit: limit, Horizon: horizon}, true
}

// worstFinding is the most severe status of the findings (Passing when
// none).
func worstFinding(fs []finding) plugin.Status {
	st := Passing
	for _, f := range fs {
		st = worse(st, f.status)
	}
	return st
}

// splitFindings separates the latency findings (for the functional
// check, when the instance has one) from the others.
func splitFindings(fs []finding, hasFunctional bool) (l3, l4 []finding) {
	for _, f := range fs {
		if f.latency && hasFunctional {
			l4 = append(l4, f)
		} else {
			l3 = append(l3, f)
		}
	}
	return l3, l4
}
