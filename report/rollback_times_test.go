package report

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// TestRollbackTimes: a blue-green rollback's measured times are in the
// report (JSON and Markdown); a run without a rollback has none.
func TestRollbackTimes(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 20, 0, 0, 0, time.UTC)
	r := &scheduler.Rollout{
		App: "edgeinfer", ID: "r1", Version: "2.0.0", PreviousVersion: "1.0.0", Strategy: scheduler.StrategyBlueGreen,
		Active: scheduler.SlotBlue, Candidate: scheduler.SlotGreen, Outcome: scheduler.OutcomeRolledBack,
		StartedAt: t0, FinishedAt: t0.Add(time.Minute), Devices: map[string]*scheduler.DeviceRecord{},
		RollbackTimes: &scheduler.RollbackTimes{TriggeredAt: t0.Add(30 * time.Second), TrafficBackAt: t0.Add(30*time.Second + 400*time.Millisecond),
			CandidateStoppedAt: t0.Add(38 * time.Second), Devices: 3},
	}
	rep := Build(r)
	if rep.RollbackTimes == nil || rep.RollbackTimes.TrafficBackSeconds != 0.4 || rep.RollbackTimes.CandidateStoppedSeconds != 8 || rep.RollbackTimes.Devices != 3 {
		t.Fatalf("rollback times %+v", rep.RollbackTimes)
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "traffic back on slot blue after 0.4 s; candidate stopped after 8.0 s (3 device(s))") {
		t.Errorf("markdown lacks the rollback times:\n%s", b.String())
	}
	r.RollbackTimes = nil
	if rep := Build(r); rep.RollbackTimes != nil {
		t.Errorf("rollback times without a rollback: %+v", rep.RollbackTimes)
	}
}
