package controller

import (
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

func TestDecide(t *testing.T) {
	submitted := time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)
	req := func(st *store.RequestStatus) *store.RolloutRequest {
		return &store.RolloutRequest{ID: "q1", App: "hello", Version: "2.0.0", SubmittedAt: submitted, Status: st}
	}
	run := func(id, version string, phase scheduler.Phase, outcome scheduler.Outcome, started time.Time) *scheduler.Rollout {
		return &scheduler.Rollout{App: "hello", ID: id, Version: version, Phase: phase, Outcome: outcome, StartedAt: started}
	}
	halted := run("r2", "2.0.0", scheduler.PhaseWave, "", submitted.Add(time.Minute))
	halted.Halt = &scheduler.Halt{Reason: "wave 1 rolled back", Remedy: scheduler.RemedyResume}
	before, after := submitted.Add(-time.Hour), submitted.Add(time.Minute)

	cases := []struct {
		name       string
		req        *store.RolloutRequest
		state      *scheduler.Rollout
		act        action
		wantStatus string // "" no status change
	}{
		{"new request, no run yet", req(nil), nil, actRun, ""},
		{"new request, the last run finished before", req(nil), run("r1", "1.0.0", scheduler.PhaseDone, scheduler.OutcomeSucceeded, before), actRun, ""},
		{"a rolled-back run of the same version before the request", req(nil), run("r1", "2.0.0", scheduler.PhasePrepare, scheduler.OutcomeRolledBack, before), actRun, ""},
		{"its run in progress: resume it", req(&store.RequestStatus{State: store.RequestAccepted, RunID: "r2"}), run("r2", "2.0.0", scheduler.PhaseWave, "", after), actRun, ""},
		{"another version in progress", req(nil), run("r1", "1.0.0", scheduler.PhaseCanary, "", before), actWait, store.RequestFailed},
		{"halted: wait for an operator", req(&store.RequestStatus{State: store.RequestAccepted, RunID: "r2"}), halted, actWait, store.RequestHalted},
		{"its run finished, status not yet recorded", req(&store.RequestStatus{State: store.RequestAccepted, RunID: "r2"}), run("r2", "2.0.0", scheduler.PhaseDone, scheduler.OutcomeSucceeded, after), actCatchUp, store.RequestFinished},
		{"finished: catch-up only", req(&store.RequestStatus{State: store.RequestFinished, RunID: "r2"}), run("r2", "2.0.0", scheduler.PhaseDone, scheduler.OutcomeSucceeded, after), actCatchUp, ""},
		{"failed: never retried", req(&store.RequestStatus{State: store.RequestFailed, Reason: "bad"}), nil, actWait, ""},
		{"finished, then a newer run by someone else", req(&store.RequestStatus{State: store.RequestFinished, RunID: "r2"}), run("r3", "3.0.0", scheduler.PhaseCanary, "", after), actWait, ""},
		{"run by an in-process apply since submission", req(nil), run("r9", "2.0.0", scheduler.PhaseDone, scheduler.OutcomeRolledBack, after), actWait, store.RequestFinished},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			act, st := decide(tc.req, tc.state)
			if act != tc.act {
				t.Errorf("action %s, want %s", act, tc.act)
			}
			got := ""
			if st != nil {
				got = st.State
				if st.Reason == "" {
					t.Errorf("status %s without a reason", st.State)
				}
			}
			if got != tc.wantStatus {
				t.Errorf("status %q, want %q", got, tc.wantStatus)
			}
		})
	}
}

// A halt already recorded is not written again (no write per wake-up).
func TestDecideHaltRecordedOnce(t *testing.T) {
	state := &scheduler.Rollout{App: "hello", ID: "r2", Version: "2.0.0", Phase: scheduler.PhaseWave, Halt: &scheduler.Halt{Reason: "x", Remedy: scheduler.RemedyResume}}
	req := &store.RolloutRequest{ID: "q1", App: "hello", Version: "2.0.0"}
	_, st := decide(req, state)
	if st == nil {
		t.Fatal("no halted status")
	}
	req.Status = st
	if act, again := decide(req, state); act != actWait || again != nil {
		t.Fatalf("second decide: %s %+v, want wait and no new status", act, again)
	}
}
