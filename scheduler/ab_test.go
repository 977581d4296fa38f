package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeCompare measures every device like a device agent would: group B
// (the devices on the candidate slot) runs the candidate, slower by
// slow[class] (1.2: 20 % more latency) and with errors[class] errors per
// 1000 requests; group A the active version.
type fakeCompare struct {
	h      *harness
	mu     sync.Mutex
	slow   map[string]float64
	errors map[string]float64
	calls  int
}

func (f *fakeCompare) Samples(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]GroupSample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	out := map[string]GroupSample{}
	for i, d := range devs {
		b := SlotHolds(f.h.cluster.slot(d.ID), r.Candidate)
		s := GroupSample{Device: d.ID, Version: r.PreviousVersion, At: f.h.clock.Now(), Requests: 1000, Errors: 5, HasRequests: true, ProbeOK: 40, ProbeTotal: 40}
		factor := 1.0
		if b {
			s.Version = r.Version
			if x := f.slow[d.Class]; x > 0 {
				factor = x
			}
			if e := f.errors[d.Class]; e > 0 {
				s.Errors = e
			}
		}
		for k := 0; k < 16; k++ {
			// A spread of 40..79 ms, different per device.
			s.LatencyMS = append(s.LatencyMS, (40+float64((k*7+i*3)%40))*factor)
		}
		cpu := 30.0
		s.CPUPercent = &cpu
		out[d.ID] = s
	}
	return out, nil
}

func abHarness(t *testing.T, promote PromoteIf) (*harness, *fakeCompare) {
	h := newHarness(t, 30)
	h.policy.Strategy = StrategyAB
	h.policy.Waves = []Wave{{Percent: 50, Soak: 20 * time.Second}}
	h.policy.AB = &AB{Duration: time.Minute, PromoteIf: promote, Confidence: 0.95,
		Tolerance: ABTolerance{ErrorRate: 0.01, P95LatencyPercent: 10}}
	h.upgradeFrom("1.0.0")
	return h, &fakeCompare{h: h, slow: map[string]float64{}, errors: map[string]float64{}}
}

func (h *harness) abController(src ComparisonSource) *Controller {
	c := h.controller()
	if src != nil {
		c.Compare = src
	}
	return c
}

func groupOf(r *Rollout, id string) string {
	ia := abGroupAIndex(r)
	if rec := r.Devices[id]; rec != nil && rec.Stage == ia {
		return GroupA
	}
	return GroupB
}

func TestABNotWorsePromotes(t *testing.T) {
	h, src := abHarness(t, PromoteNotWorse)
	r, err := h.abController(src).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeSucceeded || r.AB == nil || r.AB.Action != ABActionPromote {
		t.Fatalf("outcome %q, comparison %+v: want promoted and succeeded", r.Outcome, r.AB)
	}
	if r.AB.Verdict == ABWorse || r.AB.Verdict == ABNotEnoughData {
		t.Errorf("identical versions: verdict %q", r.AB.Verdict)
	}
	// Group B soaked for the declared duration before the comparison.
	if last := r.Stages[len(r.Stages)-2]; last.Soak != time.Minute {
		t.Errorf("group B's last stage soaked %s, want ab.duration 1m", last.Soak)
	}
	if !r.AB.Since.Equal(r.Stages[len(r.Stages)-2].StartedAt) || r.AB.Since.IsZero() {
		t.Errorf("comparison window starts %s, want group B's last stage start", r.AB.Since)
	}
	h.assertSlots(func(Device) string { return SlotGreen })
	if a := h.store.active["edgeinfer"]; a == nil || a.Slot != SlotGreen || a.Version != "2.0.0" {
		t.Errorf("active slot %+v, want green 2.0.0", a)
	}
}

func TestABWorseRollsBack(t *testing.T) {
	h, src := abHarness(t, PromoteNotWorse)
	src.slow["jetson"] = 1.2
	r, err := h.abController(src).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %q, want rolled back", r.Outcome)
	}
	if !strings.Contains(r.RollbackReason, "A/B comparison") || !strings.Contains(r.RollbackReason, "class jetson") {
		t.Errorf("rollback reason %q does not name the comparison and the class", r.RollbackReason)
	}
	var jetson ABGroupComparison
	for _, g := range r.AB.Classes {
		if g.Class == "jetson" {
			jetson = g
		} else if g.Verdict == ABWorse {
			t.Errorf("class %s (unchanged) judged %q", g.Class, g.Verdict)
		}
	}
	if jetson.Verdict != ABWorse || jetson.Tests[1].Verdict != ABWorse || jetson.Tests[1].P >= 0.05 {
		t.Errorf("jetson: %+v, want latency worse beyond the tolerance with p < 0.05", jetson)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

func TestABBetterHoldsWithoutDifference(t *testing.T) {
	h, src := abHarness(t, PromoteBetter)
	r, err := h.abController(src).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeHeld || r.AB.Action != ABActionHold {
		t.Fatalf("outcome %q action %q, want held (B is not better)", r.Outcome, r.AB.Action)
	}

	h2, src2 := abHarness(t, PromoteBetter)
	src2.slow["jetson"], src2.slow["rpi"], src2.slow["gateway"] = 0.7, 0.7, 0.7
	r, err = h2.abController(src2).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.AB.Verdict != ABBetter || r.Outcome != OutcomeSucceeded {
		t.Fatalf("B 30%% faster: verdict %q outcome %q, want B better and promoted", r.AB.Verdict, r.Outcome)
	}
}

func TestABNoEvidenceHalts(t *testing.T) {
	h, _ := abHarness(t, PromoteNotWorse)
	// No comparison source at all: the fake health source is none.
	r, err := h.abController(nil).Run(context.Background())
	var he *HaltError
	if !errors.As(err, &he) || r.Phase != PhaseCompare {
		t.Fatalf("err %v phase %s, want a halt in COMPARE", err, r.Phase)
	}
	if r.AB.Verdict != ABNotEnoughData || !strings.Contains(he.Halt.Reason, "not enough data") {
		t.Errorf("verdict %q, halt %q: want not enough data", r.AB.Verdict, he.Halt.Reason)
	}
	// Nothing was promoted: group A is still on the active slot.
	for _, d := range h.registry.devices {
		if groupOf(r, d.ID) == GroupA && h.cluster.slot(d.ID) != SlotBlue {
			t.Errorf("group A device %s is on %q", d.Name, h.cluster.slot(d.ID))
		}
	}
	// Resume compares again; now the devices answer.
	Resume(r)
	if err := h.store.SaveRollout(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	_, src := abHarness(t, PromoteNotWorse)
	src.h = h
	r, err = h.abController(src).Run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("after resume: %v, outcome %q, want promoted", err, r.Outcome)
	}
}

// A held A/B keeps group A on the active version: a returning group-A
// device is not caught up to B, a group-B device that was offline is, and
// the next run starts from the active slot (group B is put back on it
// before the next candidate is registered).
func TestABHeldKeepsGroupA(t *testing.T) {
	h, src := abHarness(t, PromoteNever)
	src.slow["jetson"] = 1.2
	// One device of each group is offline during the run.
	var offA, offB Device
	probe, _ := PlanRollout(h.policy, h.registry.devices)
	offA = deviceByID(h, probe.Stages[len(probe.Stages)-1].Devices[0].ID)
	offB = deviceByID(h, probe.Stages[1].Devices[0].ID)
	for _, d := range []Device{offA, offB} {
		h.cluster.offline[d.ID] = true
		h.health.offline[d.ID] = true
	}
	r, err := h.abController(src).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeHeld || r.AB.Verdict != ABWorse {
		t.Fatalf("outcome %q verdict %q: want held (report only) with B worse", r.Outcome, r.AB.Verdict)
	}
	if a := h.store.active["edgeinfer"]; a.Slot != SlotBlue || a.Version != "1.0.0" {
		t.Fatalf("active slot %+v, want still blue 1.0.0", a)
	}
	// Both come back; catch-up after the run.
	for _, d := range []Device{offA, offB} {
		delete(h.cluster.offline, d.ID)
		delete(h.health.offline, d.ID)
	}
	if _, err := h.abController(src).CatchUp(context.Background(), false); err != nil {
		t.Fatalf("catch-up: %v", err)
	}
	if got := h.cluster.slot(offA.ID); got != SlotBlue {
		t.Errorf("returning group-A device %s caught up to %q, want it kept on blue", offA.Name, got)
	}
	if got := h.cluster.slot(offB.ID); got != SlotGreen {
		t.Errorf("returning group-B device %s is on %q, want caught up to green", offB.Name, got)
	}
	h.assertSlots(func(d Device) string {
		if groupOf(r, d.ID) == GroupA {
			return SlotBlue
		}
		return SlotGreen
	})

	// The next release starts from the active slot (blue): its candidate is
	// green, where group B runs 2.0.0; group B goes back to blue first.
	h.policy.Release.Version = "3.0.0"
	h.policy.Strategy = StrategyCanaryRolling
	h.policy.AB = nil
	h.policy.Waves = []Wave{{Percent: 100, Soak: 20 * time.Second}}
	h.health.broken["*"] = "crash"
	r2, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("next run: %v", err)
	}
	if r2.Active != SlotBlue || r2.Candidate != SlotGreen {
		t.Errorf("next run active %q candidate %q, want blue -> green", r2.Active, r2.Candidate)
	}
	if len(h.cluster.ungated) > 0 {
		t.Fatalf("3.0.0 was placed ungated on %v", h.cluster.ungated)
	}
	if r2.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %q, want the crashing 3.0.0 rolled back", r2.Outcome)
	}
	// Every device, group B included, is back on the active version.
	h.assertSlots(func(Device) string { return SlotBlue })
}

func deviceByID(h *harness, id string) Device {
	for _, d := range h.registry.devices {
		if d.ID == id {
			return d
		}
	}
	h.t.Fatalf("no device %s", id)
	return Device{}
}

func TestCompareGroupsDropsStaleAndWrongVersion(t *testing.T) {
	since := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a := []*DeviceRecord{{DeviceRef: DeviceRef{ID: "a1", Class: "x"}}}
	b := []*DeviceRecord{{DeviceRef: DeviceRef{ID: "b1", Class: "x"}}}
	lat := []float64{10, 11, 12, 13, 14, 15, 16, 17, 18, 19}
	samples := map[string]GroupSample{
		"a1": {Version: "1.0.0", At: since.Add(-time.Second), LatencyMS: lat},
		"b1": {Version: "9.9.9", At: since.Add(time.Second), LatencyMS: lat},
	}
	cmp := CompareGroups(&AB{}, "1.0.0", "2.0.0", since, a, b, samples)
	if cmp.Dropped != 2 || cmp.Verdict != ABNotEnoughData {
		t.Errorf("dropped %d verdict %q, want both dropped and not enough data", cmp.Dropped, cmp.Verdict)
	}
	if cmp.Confidence != DefaultABConfidence {
		t.Errorf("confidence %g, want the default", cmp.Confidence)
	}
}

// The error-rate test: A 5/1000 per device, B 20/1000 on 5 devices each
// (25/5000 vs 100/5000): pooled p = 0.0125, se = sqrt(0.0125*0.9875*
// 2/5000) = 0.0022220, z = 0.015/0.0022220 = 6.75: B worse, 1.5 points
// above a 1-point tolerance. Within a 2-point tolerance the same data is
// "B worse, within the tolerance".
func TestCompareGroupsErrorRate(t *testing.T) {
	var a, b []*DeviceRecord
	samples := map[string]GroupSample{}
	for i := 0; i < 5; i++ {
		ida, idb := "a"+string(rune('0'+i)), "b"+string(rune('0'+i))
		a = append(a, &DeviceRecord{DeviceRef: DeviceRef{ID: ida, Class: "rpi"}})
		b = append(b, &DeviceRecord{DeviceRef: DeviceRef{ID: idb, Class: "rpi"}})
		samples[ida] = GroupSample{Requests: 1000, Errors: 5, HasRequests: true}
		samples[idb] = GroupSample{Requests: 1000, Errors: 20, HasRequests: true}
	}
	cmp := CompareGroups(&AB{Tolerance: ABTolerance{ErrorRate: 0.01}}, "", "", time.Time{}, a, b, samples)
	et := cmp.Classes[0].Tests[0]
	if et.Verdict != ABWorse || et.Z < 6.74 || et.Z > 6.76 {
		t.Errorf("error rate test %+v, want B worse with z 6.75", et)
	}
	if cmp.Verdict != ABWorse || !strings.Contains(cmp.Summary, "error rate in class rpi") {
		t.Errorf("verdict %q summary %q", cmp.Verdict, cmp.Summary)
	}
	// Latency and probes were not measured: they take no part.
	if cmp.Classes[0].Tests[1].Verdict != ABNotMeasured || cmp.Classes[0].Tests[2].Verdict != ABNotMeasured {
		t.Errorf("unmeasured metrics: %+v", cmp.Classes[0].Tests)
	}
	cmp = CompareGroups(&AB{Tolerance: ABTolerance{ErrorRate: 0.02}}, "", "", time.Time{}, a, b, samples)
	if cmp.Verdict != ABWithinTolerance {
		t.Errorf("within a 2-point tolerance: verdict %q", cmp.Verdict)
	}
}

// A significant improvement smaller than the tolerance is "B better,
// within the tolerance" (not enough for promote_if = "better"); beyond it,
// "B better". Latency samples 50..51.5 ms on A; B 2 % faster, then 20 %
// faster, with the 10 % tolerance.
func TestCompareGroupsBetterNeedsTheMargin(t *testing.T) {
	run := func(factor float64) ABComparison {
		var a, b []*DeviceRecord
		samples := map[string]GroupSample{}
		for i := 0; i < 4; i++ {
			ida, idb := "a"+string(rune('0'+i)), "b"+string(rune('0'+i))
			a = append(a, &DeviceRecord{DeviceRef: DeviceRef{ID: ida, Class: "rpi"}})
			b = append(b, &DeviceRecord{DeviceRef: DeviceRef{ID: idb, Class: "rpi"}})
			sa, sb := GroupSample{}, GroupSample{}
			for k := 0; k < 16; k++ {
				v := 50 + float64((k+i)%4)*0.5
				sa.LatencyMS = append(sa.LatencyMS, v)
				sb.LatencyMS = append(sb.LatencyMS, v*factor)
			}
			samples[ida], samples[idb] = sa, sb
		}
		return CompareGroups(&AB{Confidence: 0.95, Tolerance: ABTolerance{P95LatencyPercent: 10}}, "", "", time.Time{}, a, b, samples)
	}
	small := run(0.98)
	if lt := small.Classes[0].Tests[1]; lt.Verdict != ABBetterWithinTolerance || lt.P >= 0.05 {
		t.Errorf("2%% faster: latency test %+v, want significant and %q", lt, ABBetterWithinTolerance)
	}
	if small.Verdict != ABBetterWithinTolerance {
		t.Errorf("2%% faster: verdict %q", small.Verdict)
	}
	if got := abAction(PromoteBetter, small.Verdict); got != ABActionHold {
		t.Errorf("2%% faster with promote_if = better: action %q, want hold", got)
	}
	if got := abAction(PromoteNotWorse, small.Verdict); got != ABActionPromote {
		t.Errorf("2%% faster with promote_if = not-worse: action %q, want promote", got)
	}
	large := run(0.8)
	if large.Verdict != ABBetter {
		t.Errorf("20%% faster: verdict %q, want %q", large.Verdict, ABBetter)
	}
}

func TestQuantile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	if q := Quantile(v, 0.5); q != 3 {
		t.Errorf("median %g, want 3", q)
	}
	// type 7: h = 4*0.95 = 3.8 -> 4 + 0.8*(5-4) = 4.8
	if q := Quantile(v, 0.95); q < 4.7999 || q > 4.8001 {
		t.Errorf("p95 %g, want 4.8", q)
	}
	if Quantile(nil, 0.5) != 0 {
		t.Errorf("empty quantile is not 0")
	}
}

// A-b group sizing: the share of group B per class is the policy's; a wave
// that adds no device after rounding stays empty (no device is moved out of
// group A), and a class that cannot be compared is warned about.
func TestPlanABGroups(t *testing.T) {
	p := ctrlPolicy()
	p.Strategy = StrategyAB
	p.Waves = []Wave{{Percent: 50, Soak: time.Minute}}
	p.AB = &AB{Duration: 2 * time.Minute}
	// 2 devices per class: the canary (one per class) is already 50 %.
	plan, err := PlanRollout(p, fleet(6))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(plan.Stages); n != 3 || plan.Stages[2].Name != ABGroupAStage {
		t.Fatalf("stages %d, want canary, wave 1, group A", n)
	}
	if got := len(plan.Stages[1].Devices); got != 0 {
		t.Errorf("wave 1 took %d device(s) from group A, want none", got)
	}
	if plan.Stages[1].Soak != 2*time.Minute {
		t.Errorf("group B's last stage soaks %s, want ab.duration", plan.Stages[1].Soak)
	}
	for _, c := range []string{"jetson", "rpi", "gateway"} {
		if plan.Stages[0].PerClass[c] != 1 || plan.Stages[2].PerClass[c] != 1 {
			t.Errorf("class %s: B %d, A %d, want 1 and 1", c, plan.Stages[0].PerClass[c], plan.Stages[2].PerClass[c])
		}
	}
	if containsPrefix(plan.Warnings, "a-b:") {
		t.Errorf("unexpected a-b warnings %q", plan.Warnings)
	}
	// One device per class: group B takes them all.
	plan, _ = PlanRollout(p, fleet(3))
	if !containsPrefix(plan.Warnings, "a-b: every device of class gateway is in group B") {
		t.Errorf("warnings %q lack the uncomparable class", plan.Warnings)
	}
}

// hookHealth runs before each health read (to break a device at a given
// point of the run).
type hookHealth struct {
	*fakeHealth
	before func(r *Rollout)
}

func (h hookHealth) Health(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]DeviceHealth, error) {
	h.before(r)
	return h.fakeHealth.Health(ctx, r, devs)
}

// A group-B device that fails its checks by the end of the hold fails as
// at a gate: above the failure budget B is rolled back before any
// comparison.
func TestABHoldFailureRollsBack(t *testing.T) {
	h, src := abHarness(t, PromoteNotWorse)
	h.policy.Rollback.MaxFailurePercent = 0
	c := h.abController(src)
	var broken string
	c.Health = hookHealth{fakeHealth: h.health, before: func(r *Rollout) {
		if r.Phase == PhaseCompare && broken == "" {
			_, b := abGroups(r)
			broken = b[0].ID
			h.health.mu.Lock()
			h.health.broken[broken] = "crash"
			h.health.mu.Unlock()
		}
	}}
	r, err := c.Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome != OutcomeRolledBack || !strings.Contains(r.RollbackReason, "A/B hold: 1 of") {
		t.Fatalf("outcome %q reason %q, want B rolled back for its failed device", r.Outcome, r.RollbackReason)
	}
	if r.AB != nil || src.calls != 0 {
		t.Errorf("compared (%d reads) although the hold failed", src.calls)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

// On a small fleet the canary is already group B's share: the last wave is
// empty, its soak is the hold, and the comparison still runs.
func TestABEmptyLastWave(t *testing.T) {
	h, src := abHarness(t, PromoteNotWorse)
	h.registry.devices = fleet(6)
	h.upgradeFrom("1.0.0")
	src.slow["jetson"] = 1.2
	r, err := h.abController(src).Run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Stages[1].Devices != 0 || r.AB == nil {
		t.Fatalf("wave 1 has %d devices, comparison %v: want an empty wave and a comparison", r.Stages[1].Devices, r.AB)
	}
	if r.AB.Overall.A.Devices != 3 || r.AB.Overall.B.Devices != 3 {
		t.Errorf("groups A %d, B %d, want 3 and 3", r.AB.Overall.A.Devices, r.AB.Overall.B.Devices)
	}
	if r.Outcome != OutcomeRolledBack || r.AB.Verdict != ABWorse {
		t.Errorf("outcome %q verdict %q, want B worse on jetson and rolled back", r.Outcome, r.AB.Verdict)
	}
}

type failingCompare struct{ err error }

func (f failingCompare) Samples(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]GroupSample, error) {
	return nil, f.err
}

// A source that cannot answer for a reason other than the control plane
// gives no evidence: "not enough data", a halt with promote_if not-worse.
// A control-plane error past its budget pauses the rollout (I5).
func TestABSourceErrors(t *testing.T) {
	h, _ := abHarness(t, PromoteNotWorse)
	r, err := h.abController(failingCompare{errors.New("the agent configuration is missing")}).Run(context.Background())
	var he *HaltError
	if !errors.As(err, &he) || r.AB == nil || r.AB.Verdict != ABNotEnoughData {
		t.Fatalf("err %v, comparison %+v: want a not-enough-data halt", err, r.AB)
	}
	if len(h.eventsMatching("ab-samples", "error")) != 1 {
		t.Errorf("the source's error is not shown")
	}

	h, _ = abHarness(t, PromoteNotWorse)
	c := h.abController(failingCompare{fmt.Errorf("listing summaries: 500 (%w)", ErrControlPlane)})
	c.ControlPlaneRetry = 10 * time.Second
	r, err = c.Run(context.Background())
	if !errors.As(err, &he) || !strings.Contains(he.Halt.Reason, "a-b measurements") || r.AB != nil {
		t.Fatalf("err %v, comparison %+v: want a control-plane halt before any comparison", err, r.AB)
	}
}
