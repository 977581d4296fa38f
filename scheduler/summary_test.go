package scheduler

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// summaryHealth is fakeHealth that also answers summary requests.
type summaryHealth struct {
	*fakeHealth
	mu       sync.Mutex
	requests int
	asked    map[string]int
	// answer gives a device's summary; false: the device does not answer.
	answer func(d DeviceRef) (DeviceSummary, bool)
	err    error
}

func (s *summaryHealth) Summaries(ctx context.Context, r *Rollout, devs []DeviceRef) (map[string]DeviceSummary, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if s.asked == nil {
		s.asked = map[string]int{}
	}
	out := map[string]DeviceSummary{}
	for _, d := range devs {
		s.asked[d.ID]++
		if sum, ok := s.answer(d); ok {
			out[d.ID] = sum
		}
	}
	return out, s.err
}

var _ SummarySource = (*summaryHealth)(nil)

func runWithSummaries(t *testing.T, h *harness, sh *summaryHealth) *Rollout {
	t.Helper()
	ctl := h.controller()
	ctl.Health = sh
	r, err := ctl.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The summary is the gate's second opinion: check outputs carry no
// numbers (or stale ones), the devices' fresh answers show an error rate
// over the policy's limit, and the gate fails them.
func TestGateSummaryIsTheSecondOpinion(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	h.policy.Rollback.MaxErrorRate = 0.05
	sh := &summaryHealth{fakeHealth: h.health, answer: func(d DeviceRef) (DeviceSummary, bool) {
		return DeviceSummary{Version: "2.0.0", Current: &Metrics{ErrorRate: 0.5, P95LatencyMS: 12}}, true
	}}
	r := runWithSummaries(t, h, sh)
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %s, want rolled back on the summaries' error rate", r.Outcome)
	}
	if !strings.Contains(r.RollbackReason, "error rate 0.500 > max_error_rate 0.05") {
		t.Errorf("rollback reason %q", r.RollbackReason)
	}
	if sh.requests == 0 {
		t.Error("no summary request at the gate")
	}
}

// A device that does not answer (or answers for another version) is no
// evidence: its checks decide, it is neither failed nor given numbers it
// did not send; an unreachable summary store does not stop the gate.
func TestGateMissingSummaryIsNoEvidence(t *testing.T) {
	h := newHarness(t, 6)
	h.upgradeFrom("1.0.0")
	h.policy.Rollback.MaxErrorRate = 0.05
	sh := &summaryHealth{fakeHealth: h.health, err: errors.New("consul: 500 no leader"), answer: func(d DeviceRef) (DeviceSummary, bool) {
		switch d.ID {
		case "node-000":
			return DeviceSummary{}, false
		case "node-001":
			// The old instance's numbers must not speak for the release.
			return DeviceSummary{Version: "1.0.0", Current: &Metrics{ErrorRate: 0.9}}, true
		}
		return DeviceSummary{Version: "v2.0.0+build7", Current: &Metrics{ErrorRate: 0.01, P95LatencyMS: 9},
			Baseline: &Metrics{ErrorRate: 0.02, P95LatencyMS: 8}, BaselineVersion: "1.0.0"}, true
	}}
	r := runWithSummaries(t, h, sh)
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s (%s), want succeeded", r.Outcome, r.RollbackReason)
	}
	for _, rec := range r.Devices {
		switch rec.ID {
		case "node-000", "node-001":
			if rec.After != nil {
				t.Errorf("%s: after %+v from no (or another version's) summary", rec.ID, rec.After)
			}
		default:
			// The health delta's numbers come from the summaries.
			if rec.After == nil || rec.After.P95LatencyMS != 9 || rec.Baseline == nil || rec.Baseline.P95LatencyMS != 8 {
				t.Errorf("%s: baseline %+v after %+v, want the summary's", rec.ID, rec.Baseline, rec.After)
			}
		}
		if rec.Failed {
			t.Errorf("%s failed: %s", rec.ID, rec.Reason)
		}
		if sh.asked[rec.ID] == 0 {
			t.Errorf("%s was never asked for a summary", rec.ID)
		}
	}
}

// A baseline measured before the switch is kept; the summary's baseline
// only fills a missing one.
func TestGateSummaryKeepsMeasuredBaseline(t *testing.T) {
	h := newHarness(t, 3)
	h.upgradeFrom("1.0.0")
	h.health.baseline = &Metrics{P95LatencyMS: 7}
	sh := &summaryHealth{fakeHealth: h.health, answer: func(d DeviceRef) (DeviceSummary, bool) {
		return DeviceSummary{Version: "2.0.0", Current: &Metrics{P95LatencyMS: 8}, Baseline: &Metrics{P95LatencyMS: 99}, BaselineVersion: "1.0.0"}, true
	}}
	r := runWithSummaries(t, h, sh)
	if r.Outcome != OutcomeSucceeded {
		t.Fatalf("outcome %s", r.Outcome)
	}
	for _, rec := range r.Devices {
		if rec.Baseline == nil || rec.Baseline.P95LatencyMS != 7 {
			t.Errorf("%s: baseline %+v, want the one measured before the switch", rec.ID, rec.Baseline)
		}
	}
}

// A stale check output read again is not a new sample: only changes of a
// metric's value are recorded, at the reading that saw them.
func TestTrendSamplesSkipRepeatedReadings(t *testing.T) {
	var s TrendSamples
	t0 := time.Unix(1_700_000_000, 0)
	for i, mem := range []float64{10, 10, 10, 12, 12, 14} {
		s.add(t0.Add(time.Duration(i)*2*time.Second), &Metrics{MemoryMB: mem, P95LatencyMS: 5})
	}
	if len(s.Memory) != 3 || s.Memory[1].Value != 12 || !s.Memory[1].At.Equal(t0.Add(6*time.Second)) {
		t.Errorf("memory samples %+v, want 10, 12 (at 6 s), 14", s.Memory)
	}
	if len(s.Latency) != 1 {
		t.Errorf("latency samples %+v, want one", s.Latency)
	}
}
