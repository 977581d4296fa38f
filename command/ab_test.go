package command

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

func TestStatusShowsABComparison(t *testing.T) {
	since := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	a := []*scheduler.DeviceRecord{{DeviceRef: scheduler.DeviceRef{ID: "a1", Name: "rpi-1", Class: "rpi"}}}
	b := []*scheduler.DeviceRecord{{DeviceRef: scheduler.DeviceRef{ID: "b1", Name: "rpi-2", Class: "rpi"}}}
	samples := map[string]scheduler.GroupSample{
		"a1": {At: since, Requests: 1000, Errors: 2, HasRequests: true},
		"b1": {At: since, Requests: 1000, Errors: 3, HasRequests: true},
	}
	cmp := scheduler.CompareGroups(&scheduler.AB{}, "1.0.0", "2.0.0", since, a, b, samples)
	cmp.Action, cmp.PromoteIf = scheduler.ABActionHold, scheduler.PromoteNever
	r := &scheduler.Rollout{App: "edgeinfer", ID: "r1", Version: "2.0.0", PreviousVersion: "1.0.0", Strategy: scheduler.StrategyAB,
		Active: "blue", Candidate: "green", Phase: scheduler.PhaseDone, Outcome: scheduler.OutcomeHeld, AB: &cmp,
		Devices: map[string]*scheduler.DeviceRecord{}}
	var buf bytes.Buffer
	printStatus(&buf, r, false)
	out := buf.String()
	for _, want := range []string{"A/B comparison: A = 1.0.0", "two-proportion z-test", "no detectable difference", "Both groups are kept"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	if h := heldText(r); !strings.Contains(h, "1 device(s) run 2.0.0 (B, slot green)") || !strings.Contains(h, "starts from slot blue") {
		t.Errorf("held text %q", h)
	}
	// Other runs print no comparison.
	buf.Reset()
	r.AB = nil
	printStatus(&buf, r, false)
	if strings.Contains(buf.String(), "A/B comparison") {
		t.Error("comparison printed for a run without one")
	}
}
