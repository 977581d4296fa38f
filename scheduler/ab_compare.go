package scheduler

// The comparison of an a-b rollout's groups: per class and overall, the
// statistical tests (internal/stats), the verdicts and the figures the
// report prints. Pure: CompareGroups takes the samples, the phase in ab.go
// gathers them.

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/internal/stats"
)

// abClassData is one class's samples, by group.
type abClassData struct {
	a, b []GroupSample
	na   int // devices in group A (with or without a sample)
	nb   int
}

// CompareGroups compares group A (devices on version va) with group B (on
// vb) from their samples, per class and overall, with cfg's confidence
// and tolerance. Samples written before since, or of another version than
// their group's, are dropped.
//
// Tests: error rate and probe failures with the two-proportion z-test per
// class and the Cochran–Mantel–Haenszel test overall (stratified by
// class); latency with the Mann–Whitney U test per class (exact for small
// samples without ties) and the van Elteren test overall (the stratified
// rank-sum test). A metric is worse beyond the tolerance when the test
// finds B higher at the confidence and B's figure exceeds A's by more
// than the tolerance.
func CompareGroups(cfg *AB, va, vb string, since time.Time, groupA, groupB []*DeviceRecord, samples map[string]GroupSample) ABComparison {
	conf := cfg.Confidence
	if conf <= 0 || conf >= 1 {
		conf = DefaultABConfidence
	}
	minReq := cfg.MinRequests
	if minReq <= 0 {
		minReq = DefaultABMinRequests
	}
	minLat := cfg.MinSamples
	if minLat <= 0 {
		minLat = DefaultABMinSamples
	}
	alpha := 1 - conf
	out := ABComparison{Confidence: conf}
	classes := map[string]*abClassData{}
	get := func(class string) *abClassData {
		d := classes[class]
		if d == nil {
			d = &abClassData{}
			classes[class] = d
		}
		return d
	}
	add := func(recs []*DeviceRecord, group, version string) {
		for _, rec := range recs {
			d := get(rec.Class)
			if group == GroupA {
				d.na++
			} else {
				d.nb++
			}
			s, ok := samples[rec.ID]
			if !ok {
				continue
			}
			if s.At.Before(since) || (version != "" && s.Version != "" && !SameVersion(s.Version, version)) {
				out.Dropped++
				continue
			}
			if group == GroupA {
				d.a = append(d.a, s)
			} else {
				d.b = append(d.b, s)
			}
		}
	}
	add(groupA, GroupA, va)
	add(groupB, GroupB, vb)

	names := make([]string, 0, len(classes))
	for n := range classes {
		names = append(names, n)
	}
	sort.Strings(names)
	var errStrata, probeStrata []stats.Stratum
	var latStrata []stats.Samples
	var all abClassData
	for _, n := range names {
		d := classes[n]
		g := compareClass(n, d, alpha, minReq, minLat, cfg.Tolerance)
		out.Classes = append(out.Classes, g)
		all.na += d.na
		all.nb += d.nb
		all.a = append(all.a, d.a...)
		all.b = append(all.b, d.b...)
		ea, eb := pooledErrors(d.a), pooledErrors(d.b)
		errStrata = append(errStrata, stats.Stratum{A: ea, B: eb})
		pa, pb := pooledProbeFailures(d.a), pooledProbeFailures(d.b)
		probeStrata = append(probeStrata, stats.Stratum{A: pa, B: pb})
		latStrata = append(latStrata, stats.Samples{A: latencies(d.a), B: latencies(d.b)})
	}
	ov := ABGroupComparison{A: figures(all.a, all.na), B: figures(all.b, all.nb)}
	ov.Tests = []ABTest{
		proportionTest(ABMetricErrorRate, "Cochran-Mantel-Haenszel (stratified by class)", ov.A.Requests, ov.B.Requests, pooledErrors(all.a), pooledErrors(all.b), hasRequests(all.a), hasRequests(all.b), alpha, minReq, cfg.Tolerance.ErrorRate,
			func() (stats.ZResult, error) { return stats.CMH(errStrata) }),
		latencyTest("van Elteren (stratified Mann-Whitney)", all.a, all.b, alpha, minLat, cfg.Tolerance.P95LatencyPercent,
			func(a, b []float64) (float64, float64, string, error) {
				z, err := stats.VanElteren(latStrata)
				return z.Z, z.P, "", err
			}),
		proportionTest(ABMetricProbe, "Cochran-Mantel-Haenszel (stratified by class)", float64(ov.A.ProbeTotal), float64(ov.B.ProbeTotal), pooledProbeFailures(all.a), pooledProbeFailures(all.b), ov.A.ProbeTotal > 0, ov.B.ProbeTotal > 0, alpha, minReq, cfg.Tolerance.ProbeFailureRate,
			func() (stats.ZResult, error) { return stats.CMH(probeStrata) }),
	}
	ov.Verdict = combine(ov.Tests)
	out.Overall = ov

	out.Verdict = ov.Verdict
	var worse []string
	for _, g := range out.Classes {
		for _, t := range g.Tests {
			if t.Verdict == ABWorse {
				worse = append(worse, fmt.Sprintf("%s in class %s: %s (%s, %s)", t.Metric, className(g.Class), t.Detail, t.Test, PText(t.P)))
			}
		}
	}
	for _, t := range ov.Tests {
		if t.Verdict == ABWorse {
			worse = append(worse, fmt.Sprintf("%s overall: %s (%s, %s)", t.Metric, t.Detail, t.Test, PText(t.P)))
		}
	}
	switch {
	case len(worse) > 0:
		out.Verdict = ABWorse
		out.Summary = fmt.Sprintf("B worse beyond the tolerance at %s%% confidence: %s", fmtPct(conf*100), strings.Join(worse, "; "))
	case out.Verdict == ABNotEnoughData:
		out.Summary = fmt.Sprintf("not enough data to compare (%d of %d A devices and %d of %d B devices measured; at least %g requests or %d latency samples per group are needed)",
			ov.A.Measured, ov.A.Devices, ov.B.Measured, ov.B.Devices, minReq, minLat)
	default:
		var parts []string
		for _, t := range ov.Tests {
			if t.Verdict != ABNotMeasured {
				p := "no test"
				if t.Test != "" {
					p = PText(t.P)
				}
				parts = append(parts, fmt.Sprintf("%s %s (%s)", t.Metric, t.Verdict, p))
			}
		}
		out.Summary = fmt.Sprintf("%s at %s%% confidence: %s", out.Verdict, fmtPct(conf*100), strings.Join(parts, ", "))
	}
	return out
}

func compareClass(class string, d *abClassData, alpha, minReq float64, minLat int, tol ABTolerance) ABGroupComparison {
	g := ABGroupComparison{Class: class, A: figures(d.a, d.na), B: figures(d.b, d.nb)}
	g.Tests = []ABTest{
		proportionTest(ABMetricErrorRate, "two-proportion z-test", g.A.Requests, g.B.Requests, pooledErrors(d.a), pooledErrors(d.b), hasRequests(d.a), hasRequests(d.b), alpha, minReq, tol.ErrorRate,
			func() (stats.ZResult, error) { return stats.TwoProportion(pooledErrors(d.a), pooledErrors(d.b)) }),
		latencyTest("Mann-Whitney U", d.a, d.b, alpha, minLat, tol.P95LatencyPercent,
			func(a, b []float64) (float64, float64, string, error) {
				u, err := stats.MannWhitney(a, b)
				name := ""
				if u.Exact {
					name = "Mann-Whitney U (exact)"
				}
				return u.Z, u.P, name, err
			}),
		proportionTest(ABMetricProbe, "two-proportion z-test", float64(g.A.ProbeTotal), float64(g.B.ProbeTotal), pooledProbeFailures(d.a), pooledProbeFailures(d.b), g.A.ProbeTotal > 0, g.B.ProbeTotal > 0, alpha, minReq, tol.ProbeFailureRate,
			func() (stats.ZResult, error) {
				return stats.TwoProportion(pooledProbeFailures(d.a), pooledProbeFailures(d.b))
			}),
	}
	g.Verdict = combine(g.Tests)
	return g
}

// proportionTest judges a rate (errors, probe failures: higher is worse).
func proportionTest(metric, name string, nA, nB float64, a, b stats.Proportion, hasA, hasB bool, alpha, minN, tol float64, run func() (stats.ZResult, error)) ABTest {
	t := ABTest{Metric: metric}
	if !hasA && !hasB {
		t.Verdict = ABNotMeasured
		return t
	}
	if nA < minN || nB < minN {
		t.Verdict = ABNotEnoughData
		t.Detail = fmt.Sprintf("A %g, B %g counted; at least %g each needed", nA, nB, minN)
		return t
	}
	z, err := run()
	if err != nil {
		t.Verdict = ABNotEnoughData
		t.Detail = err.Error()
		return t
	}
	t.Test, t.Z, t.P = name, z.Z, z.P
	diff := b.Rate() - a.Rate()
	what := "failure rate"
	if metric == ABMetricErrorRate {
		what = "error rate"
	}
	t.Detail = fmt.Sprintf("%s %s -> %s (%+.2f points, tolerance %.2f)", what, fmtRate(a.Rate()), fmtRate(b.Rate()), diff*100, tol*100)
	t.Verdict = judge(z.P < alpha, z.Z > 0, diff > tol, -diff > tol)
	return t
}

// latencyTest judges latency samples (higher is worse); the tolerance is
// on the p95's increase in percent.
func latencyTest(name string, a, b []GroupSample, alpha float64, minN int, tolPct float64, run func(a, b []float64) (z, p float64, name string, err error)) ABTest {
	t := ABTest{Metric: ABMetricLatency}
	la, lb := latencies(a), latencies(b)
	if len(la) == 0 && len(lb) == 0 {
		t.Verdict = ABNotMeasured
		return t
	}
	if len(la) < minN || len(lb) < minN {
		t.Verdict = ABNotEnoughData
		t.Detail = fmt.Sprintf("A %d, B %d latency samples; at least %d each needed", len(la), len(lb), minN)
		return t
	}
	z, p, exact, err := run(la, lb)
	if err != nil {
		t.Verdict = ABNotEnoughData
		t.Detail = err.Error()
		return t
	}
	t.Test, t.Z, t.P = name, z, p
	if exact != "" {
		t.Test = exact
	}
	pa, pb := Quantile(la, 0.95), Quantile(lb, 0.95)
	inc := 0.0
	if pa > 0 {
		inc = (pb - pa) / pa * 100
	}
	higher := z > 0
	if z == 0 {
		// Exact tests give no z: the direction is that of the medians.
		higher = Quantile(lb, 0.5) > Quantile(la, 0.5)
	}
	t.Detail = fmt.Sprintf("p95 %s ms -> %s ms (%+.0f%%, tolerance %s%%)", fmtMS(pa), fmtMS(pb), inc, fmtPct(tolPct))
	t.Verdict = judge(p < alpha, higher, inc > tolPct, -inc > tolPct)
	return t
}

// judge is a metric's verdict: a significant difference with B higher
// (worse) is beyond the tolerance when B's figure exceeds it; one with B
// lower (better) counts as better only when the improvement exceeds the
// tolerance too (the same margin on both sides).
func judge(significant, bHigher, worseBeyond, betterBeyond bool) ABVerdict {
	switch {
	case !significant:
		return ABNoDifference
	case !bHigher && betterBeyond:
		return ABBetter
	case !bHigher:
		return ABBetterWithinTolerance
	case worseBeyond:
		return ABWorse
	}
	return ABWithinTolerance
}

// combine is a group's verdict from its metrics': worse when any is
// worse; not enough data when a measured metric lacks data (or none was
// measured); better when one is better and none is worse within the
// tolerance; otherwise within the tolerance or no difference.
func combine(tests []ABTest) ABVerdict {
	measured := 0
	has := map[ABVerdict]bool{}
	for _, t := range tests {
		if t.Verdict == ABNotMeasured {
			continue
		}
		measured++
		has[t.Verdict] = true
	}
	switch {
	case has[ABWorse]:
		return ABWorse
	case measured == 0 || has[ABNotEnoughData]:
		return ABNotEnoughData
	case has[ABWithinTolerance]:
		return ABWithinTolerance
	case has[ABBetter]:
		return ABBetter
	case has[ABBetterWithinTolerance]:
		return ABBetterWithinTolerance
	}
	return ABNoDifference
}

func hasRequests(ss []GroupSample) bool {
	for _, s := range ss {
		if s.HasRequests {
			return true
		}
	}
	return false
}

func pooledErrors(ss []GroupSample) stats.Proportion {
	var p stats.Proportion
	for _, s := range ss {
		if s.HasRequests && s.Requests > 0 {
			p.X += min(max(s.Errors, 0), s.Requests)
			p.N += s.Requests
		}
	}
	return p
}

func pooledProbeFailures(ss []GroupSample) stats.Proportion {
	var p stats.Proportion
	for _, s := range ss {
		if s.ProbeTotal > 0 {
			p.X += float64(s.ProbeTotal - min(max(s.ProbeOK, 0), s.ProbeTotal))
			p.N += float64(s.ProbeTotal)
		}
	}
	return p
}

func latencies(ss []GroupSample) []float64 {
	var out []float64
	for _, s := range ss {
		for _, v := range s.LatencyMS {
			if !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 {
				out = append(out, v)
			}
		}
	}
	return out
}

func figures(ss []GroupSample, devices int) ABFigures {
	f := ABFigures{Devices: devices, Measured: len(ss)}
	var cpu, mem []float64
	for _, s := range ss {
		if s.CPUPercent != nil {
			cpu = append(cpu, *s.CPUPercent)
		}
		if s.MemoryPercent != nil {
			mem = append(mem, *s.MemoryPercent)
		}
	}
	e := pooledErrors(ss)
	f.Requests, f.Errors = e.N, e.X
	if e.N > 0 {
		f.ErrorRate = ptr(e.Rate())
	}
	lat := latencies(ss)
	f.LatencySamples = len(lat)
	if len(lat) > 0 {
		f.P50LatencyMS = ptr(Quantile(lat, 0.5))
		f.P95LatencyMS = ptr(Quantile(lat, 0.95))
	}
	for _, s := range ss {
		if s.ProbeTotal > 0 {
			f.ProbeOK += min(max(s.ProbeOK, 0), s.ProbeTotal)
			f.ProbeTotal += s.ProbeTotal
		}
	}
	if f.ProbeTotal > 0 {
		f.ProbeSuccess = ptr(float64(f.ProbeOK) / float64(f.ProbeTotal))
	}
	f.CPUPercent = mean(cpu)
	f.MemoryPercent = mean(mem)
	return f
}

func mean(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := 0.0
	for _, x := range v {
		s += x
	}
	return ptr(s / float64(len(v)))
}

func ptr(f float64) *float64 { return &f }

// Quantile is the q-quantile of v by linear interpolation between order
// statistics (type 7, the default of R and numpy); 0 for no data.
func Quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	h := (float64(len(s)) - 1) * q
	lo := math.Floor(h)
	i := int(lo)
	if i+1 >= len(s) {
		return s[len(s)-1]
	}
	return s[i] + (h-lo)*(s[i+1]-s[i])
}

// FormatP prints a p-value for people: three significant digits, "< 0.0001"
// below that.
func FormatP(p float64) string {
	if p < 0.0001 {
		return "< 0.0001"
	}
	return fmt.Sprintf("%.3g", p)
}

// PText is "p = 0.0123" or "p < 0.0001".
func PText(p float64) string {
	if p < 0.0001 {
		return "p < 0.0001"
	}
	return "p = " + FormatP(p)
}

func fmtRate(r float64) string { return fmt.Sprintf("%.2f%%", r*100) }

func fmtMS(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}
