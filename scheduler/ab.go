package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/internal/stats"
)

// An a-b rollout runs the release on a share of every class (group B: the
// canary and the waves, the last of which soaks for at least ab.duration)
// while the rest of the fleet keeps the active version (group A). When
// group B's last gate passed, the rollout enters COMPARE: the devices'
// measurements over the hold are compared, per class and overall, and
// ab.promote_if decides:
//
//	never (default)  report only; the run ends "held": both groups keep
//	                 their version, the active slot stays A's
//	not-worse        promote B (group A's stage runs, then CONFIRM) unless B
//	                 is worse beyond the tolerance (then B is rolled back)
//	better           promote B only when it is measurably better; B worse
//	                 rolls B back; otherwise the run ends held
//
// "Not enough data" is never a verdict on B: with not-worse or better the
// rollout halts for an operator (resume compares again, rollback takes B
// back); with never it is reported.
//
// A held run leaves the active slot A's, so group A never receives B by
// accident: its devices are in no stage that runs, catch-up only handles
// group B's devices, and the next run starts from the active slot (its
// PREPARE puts group B's devices back on it before the new candidate is
// registered: invariant I1).

// PhaseCompare is an a-b rollout comparing its groups.
const PhaseCompare Phase = "COMPARE"

// OutcomeHeld is an a-b run that ended with both groups kept: group B runs
// the candidate, group A the active version, which stays active.
const OutcomeHeld Outcome = "held"

// Decision kinds of the comparison.
const (
	DecisionABCompared DecisionKind = "ab-compared"
	DecisionABPromote  DecisionKind = "ab-promote"
	DecisionABHeld     DecisionKind = "ab-held"
)

// ABGroupAStage names the stage that holds group A: it runs only when the
// comparison promotes B.
const ABGroupAStage = "group A"

// Groups of an a-b rollout.
const (
	GroupA = "A"
	GroupB = "B"
)

// GroupSample is what one device measured over the hold, as the
// comparison needs it (the scheduler's own copy of the device summary's
// window; checks reads it from Consul).
type GroupSample struct {
	Device string // device ID
	// Version of the instance measured; the comparison drops a sample
	// whose version is not its group's.
	Version string
	// At is when the device wrote it; a sample older than the hold's
	// start is stale and dropped.
	At time.Time
	// Requests and Errors are counts over the window; HasRequests is
	// false when the application reports no counters.
	Requests, Errors float64
	HasRequests      bool
	// LatencyMS are latency samples.
	LatencyMS []float64
	// ProbeOK of ProbeTotal functional probe runs passed.
	ProbeOK, ProbeTotal int
	// CPUPercent and MemoryPercent are the window's means, nil when not
	// measured.
	CPUPercent, MemoryPercent *float64
}

// ComparisonSource yields the devices' measurements for an a-b
// comparison. A HealthSource may implement it; otherwise
// Controller.Compare is used. A device without a sample is simply missing (no
// evidence); an error is a control-plane problem (retried, then a halt).
type ComparisonSource interface {
	Samples(ctx context.Context, r *Rollout, devices []DeviceRef) (map[string]GroupSample, error)
}

// ABVerdict is a comparison's verdict, in words.
type ABVerdict string

const (
	ABBetter          ABVerdict = "B better"
	ABNoDifference    ABVerdict = "no detectable difference"
	ABWithinTolerance ABVerdict = "B worse, within the tolerance"
	ABWorse           ABVerdict = "B worse beyond the tolerance"
	ABNotEnoughData   ABVerdict = "not enough data"
	// ABNotMeasured: neither group measured the metric; it takes no part
	// in the verdict.
	ABNotMeasured ABVerdict = "not measured"
)

// Actions taken on a comparison.
const (
	ABActionPromote  = "promote"
	ABActionRollback = "rollback"
	ABActionHold     = "hold"
	ABActionHalt     = "halt"
)

// ABComparison is an a-b rollout's comparison, persisted on the rollout.
type ABComparison struct {
	At time.Time `json:"at"`
	// Since is the start of the hold (group B's last stage).
	Since      time.Time `json:"since"`
	Confidence float64   `json:"confidence"`
	PromoteIf  PromoteIf `json:"promote_if"`
	// Classes are the per-class comparisons, by class name; Overall
	// combines them (stratified tests).
	Classes []ABGroupComparison `json:"classes"`
	Overall ABGroupComparison   `json:"overall"`
	// Verdict decides: B worse when any class or the overall comparison
	// is worse beyond the tolerance; otherwise the overall verdict.
	Verdict ABVerdict `json:"verdict"`
	// Summary says the verdict and why in one sentence.
	Summary string `json:"summary"`
	// Action is what the rollout did with it (ABAction*).
	Action string `json:"action,omitempty"`
	// Dropped counts samples left out (stale, wrong version).
	Dropped int `json:"dropped,omitempty"`
}

// ABGroupComparison compares A and B in one class ("" overall).
type ABGroupComparison struct {
	Class   string    `json:"class"`
	A       ABFigures `json:"a"`
	B       ABFigures `json:"b"`
	Tests   []ABTest  `json:"tests"`
	Verdict ABVerdict `json:"verdict"`
}

// ABFigures are one group's figures in one class.
type ABFigures struct {
	Devices int `json:"devices"`
	// Devices with a usable sample.
	Measured       int      `json:"measured"`
	Requests       float64  `json:"requests"`
	Errors         float64  `json:"errors"`
	ErrorRate      *float64 `json:"error_rate,omitempty"`
	LatencySamples int      `json:"latency_samples"`
	P50LatencyMS   *float64 `json:"p50_latency_ms,omitempty"`
	P95LatencyMS   *float64 `json:"p95_latency_ms,omitempty"`
	ProbeOK        int      `json:"probe_ok"`
	ProbeTotal     int      `json:"probe_total"`
	ProbeSuccess   *float64 `json:"probe_success,omitempty"`
	CPUPercent     *float64 `json:"cpu_percent,omitempty"`
	MemoryPercent  *float64 `json:"memory_percent,omitempty"`
}

// Metrics compared.
const (
	ABMetricErrorRate = "error rate"
	ABMetricLatency   = "latency"
	ABMetricProbe     = "probe success"
)

// ABTest is one metric's test in one class.
type ABTest struct {
	Metric string `json:"metric"`
	// Test names the statistical test ("" when none ran).
	Test string `json:"test,omitempty"`
	// P is the two-sided p-value; Z the signed statistic (positive: B
	// higher), 0 for an exact test.
	P       float64   `json:"p"`
	Z       float64   `json:"z,omitempty"`
	Verdict ABVerdict `json:"verdict"`
	// Detail says the difference in words ("p95 +21% (tolerance 10%)").
	Detail string `json:"detail,omitempty"`
}

// abGroupB reports whether a stage of the policy is part of an a-b
// rollout's group B (its canary and waves).
func abGroupB(p *Policy, spec StageSpec) bool {
	return p.Strategy == StrategyAB && spec.Name != ABGroupAStage
}

// abPlanWarnings warns about the classes an a-b plan cannot compare: all
// their devices are in group B, or none is.
func abPlanWarnings(plan *Plan) {
	if len(plan.Stages) < 2 || plan.Stages[len(plan.Stages)-1].Name != ABGroupAStage {
		return
	}
	a := plan.Stages[len(plan.Stages)-1].PerClass
	for _, class := range slices.Sorted(maps.Keys(plan.PerClassTotal)) {
		total := plan.PerClassTotal[class]
		switch {
		case total == 0:
		case a[class] == 0:
			plan.warnf("a-b: every device of class %s is in group B (%d device(s)); the class cannot be compared (lower the last wave's percent or add devices)", className(class), total)
		case a[class] == total:
			plan.warnf("a-b: no device of class %s is in group B; the class cannot be compared", className(class))
		}
	}
}

// abState returns the index of the group-A stage, -1 when the rollout has
// none (not a-b).
func abGroupAIndex(r *Rollout) int {
	if r.Strategy != StrategyAB || len(r.Stages) < 2 {
		return -1
	}
	if i := len(r.Stages) - 1; r.Stages[i].Name == ABGroupAStage {
		return i
	}
	return -1
}

// abDue reports whether the rollout is about to start its group-A stage
// without a comparison that promoted B: it must compare first.
func abDue(r *Rollout) bool {
	i := abGroupAIndex(r)
	if i < 0 || r.Phase != PhaseWave || r.Stage != i || r.Step != StepSwitching {
		return false
	}
	return r.AB == nil || r.AB.Action != ABActionPromote
}

// enterCompare moves an a-b rollout whose group B passed its gates to
// COMPARE (the Run loop calls it instead of starting group A's stage).
func (c *Controller) enterCompare(ctx context.Context, r *Rollout) error {
	r.Phase = PhaseCompare
	r.Step = ""
	r.AB = nil
	return c.save(ctx, r)
}

// compareSource is the comparison's data source: the health source when
// it implements ComparisonSource (it follows the devices already), else
// Compare, else none (the comparison then has no evidence).
func (c *Controller) compareSource() ComparisonSource {
	if cs, ok := c.Health.(ComparisonSource); ok {
		return cs
	}
	if c.Compare != nil {
		return c.Compare
	}
	return nil
}

// abGroups returns the devices of groups A and B: B are group B's devices
// that run the candidate healthy; A the group-A stage's devices that never
// left the active slot.
func abGroups(r *Rollout) (a, b []*DeviceRecord) {
	ia := abGroupAIndex(r)
	for _, rec := range r.SortedDevices() {
		switch {
		case rec.Stage < 0:
		case rec.Stage == ia && rec.State == DevicePending && !rec.Attempted:
			a = append(a, rec)
		case rec.Stage != ia && (rec.State == DeviceHealthy || rec.State == DeviceCaughtUp):
			b = append(b, rec)
		}
	}
	return a, b
}

// compareAB runs the comparison and acts on its verdict.
func (c *Controller) compareAB(ctx context.Context, r *Rollout) error {
	log := c.Logger.Named("ab").With("rollout", r.App, "run", r.ID)
	cfg := c.Policy.AB
	if cfg == nil {
		cfg = &AB{PromoteIf: PromoteNever}
	}
	groupA, groupB := abGroups(r)
	// The hold's last look at group B: every device is judged once more as
	// at a gate (the soaks only watched each stage's own devices); the
	// devices that fail are quarantined, or B is rolled back when more
	// than the failure budget fails.
	if err := c.sampleDevices(ctx, r, groupB, true); err != nil {
		return err
	}
	var failed []*DeviceRecord
	for _, rec := range groupB {
		if rec.State == DeviceFailed {
			failed = append(failed, rec)
		}
	}
	if len(failed) > 0 {
		pct := percent(len(failed), len(groupB))
		if pct > c.Policy.Rollback.MaxFailurePercent {
			reason := fmt.Sprintf("A/B hold: %d of %d group B devices failed their checks (%.1f%% > max_failure_percent %g): %s",
				len(failed), len(groupB), pct, c.Policy.Rollback.MaxFailurePercent, describeDevices(failed))
			c.decide(r, DecisionRollback, reason, map[string]float64{"failed": float64(len(failed)), "group_b": float64(len(groupB))})
			return c.beginRollback(ctx, r, ScopeFleet, reason)
		}
		for _, rec := range failed {
			if err := c.quarantine(ctx, r, rec); err != nil {
				return err
			}
		}
		groupA, groupB = abGroups(r)
	}
	refs := make([]DeviceRef, 0, len(groupA)+len(groupB))
	for _, rec := range append(append([]*DeviceRecord(nil), groupA...), groupB...) {
		refs = append(refs, rec.DeviceRef)
	}
	since := time.Time{}
	if ia := abGroupAIndex(r); ia > 0 {
		since = r.Stages[ia-1].StartedAt
	}
	samples := map[string]GroupSample{}
	if src := c.compareSource(); src != nil && len(refs) > 0 {
		// The devices answer a summary request within seconds; wait for
		// every device (up to the health deadline), then compare what
		// arrived. A missing sample is no evidence, never a pass.
		deadline := c.Clock.Now().Add(c.HealthDeadline)
		for {
			var got map[string]GroupSample
			err := c.clusterCall(ctx, "reading the a-b measurements of "+r.App, func() error {
				var err error
				got, err = src.Samples(ctx, r, refs)
				return err
			})
			var cpe *ControlPlaneError
			if err != nil && (errors.As(err, &cpe) || errors.Is(err, ErrLockLost) || ctx.Err() != nil) {
				return err
			}
			if err != nil {
				// Not the control plane (no agent configuration to
				// name the request in, say): no evidence, said so.
				log.Warn("cannot read the devices' measurements", "error", err)
				c.emit(r, "", "ab-samples", "error", err.Error())
				break
			}
			samples = got
			fresh := 0
			for _, ref := range refs {
				if s, ok := got[ref.ID]; ok && !s.At.Before(since) {
					fresh++
				}
			}
			now := c.Clock.Now()
			if fresh == len(refs) || !now.Before(deadline) {
				break
			}
			log.Debug("waiting for the devices' measurements", "have", fresh, "of", len(refs))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-c.Clock.After(c.SampleInterval):
			}
		}
	}
	cmp := CompareGroups(cfg, r.PreviousVersion, r.Version, since, groupA, groupB, samples)
	cmp.At = c.Clock.Now()
	cmp.Since = since
	cmp.PromoteIf = cfg.PromoteIf
	if cmp.PromoteIf == "" {
		cmp.PromoteIf = PromoteNever
	}
	cmp.Action = abAction(cmp.PromoteIf, cmp.Verdict)
	r.AB = &cmp
	numbers := map[string]float64{"devices_a": float64(cmp.Overall.A.Devices), "devices_b": float64(cmp.Overall.B.Devices), "confidence": cmp.Confidence}
	for _, t := range cmp.Overall.Tests {
		if t.Test != "" {
			numbers["p_"+strings.ReplaceAll(t.Metric, " ", "_")] = t.P
		}
	}
	c.decide(r, DecisionABCompared, "A/B comparison: "+cmp.Summary, numbers)
	log.Info("a-b comparison", "verdict", cmp.Verdict, "action", cmp.Action, "devices_a", cmp.Overall.A.Devices, "devices_b", cmp.Overall.B.Devices)

	switch cmp.Action {
	case ABActionRollback:
		reason := "A/B comparison: " + cmp.Summary
		c.decide(r, DecisionRollback, reason, numbers)
		return c.beginRollback(ctx, r, ScopeFleet, reason)
	case ABActionHalt:
		return c.halt(ctx, r, Halt{
			Reason: "A/B comparison: " + cmp.Summary + "; promote_if = " + string(cmp.PromoteIf) + " needs a verdict",
			Fix:    "check that the device agents write their summaries (the agent's summary_request), or lengthen ab.duration; resume compares again",
			Remedy: RemedyResumeOrRollback,
		})
	case ABActionPromote:
		ia := abGroupAIndex(r)
		c.decide(r, DecisionABPromote, fmt.Sprintf("promoting %s to the rest of the fleet (%s): %s", r.Version, ABGroupAStage, cmp.Verdict), nil)
		r.Phase = PhaseWave
		r.Stage = ia
		r.Step = StepSwitching
		return c.save(ctx, r)
	default:
		now := c.Clock.Now()
		c.decide(r, DecisionABHeld, fmt.Sprintf("A/B held: %d device(s) run %s (B), %d keep %s (A, still the active version in slot %s); promote_if = %s",
			cmp.Overall.B.Devices, r.Version, cmp.Overall.A.Devices, versionName(r.PreviousVersion), slotName(r.Active), cmp.PromoteIf), nil)
		r.Phase = PhaseDone
		r.Step = ""
		r.Outcome = OutcomeHeld
		r.FinishedAt = now
		return c.save(ctx, r)
	}
}

// abAction is what promote_if makes of a verdict.
func abAction(p PromoteIf, v ABVerdict) string {
	switch p {
	case PromoteNotWorse:
		switch v {
		case ABWorse:
			return ABActionRollback
		case ABNotEnoughData:
			return ABActionHalt
		}
		return ABActionPromote
	case PromoteBetter:
		switch v {
		case ABWorse:
			return ABActionRollback
		case ABNotEnoughData:
			return ABActionHalt
		case ABBetter:
			return ABActionPromote
		}
		return ABActionHold
	}
	return ABActionHold
}

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
	t.Verdict = judge(z.P < alpha, z.Z > 0, diff > tol)
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
	t.Verdict = judge(p < alpha, higher, inc > tolPct)
	return t
}

// judge is a metric's verdict: a significant difference with B higher
// (worse) is beyond the tolerance when B's figure exceeds it.
func judge(significant, bHigher, beyondTolerance bool) ABVerdict {
	switch {
	case !significant:
		return ABNoDifference
	case !bHigher:
		return ABBetter
	case beyondTolerance:
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
