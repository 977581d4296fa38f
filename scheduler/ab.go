package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
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
	ABBetter ABVerdict = "B better"
	// ABBetterWithinTolerance: B measurably better, by less than the
	// tolerance (a difference a device's repeated readings make
	// "significant" without it mattering): not enough for promote_if =
	// "better".
	ABBetterWithinTolerance ABVerdict = "B better, within the tolerance"
	ABNoDifference          ABVerdict = "no detectable difference"
	ABWithinTolerance       ABVerdict = "B worse, within the tolerance"
	ABWorse                 ABVerdict = "B worse beyond the tolerance"
	ABNotEnoughData         ABVerdict = "not enough data"
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
