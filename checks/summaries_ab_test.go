package checks

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// requestOf is the summary request the agent configuration names.
func requestOf(t *testing.T, f *fakeSource, app string) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var doc struct {
		Request string `json:"summary_request"`
	}
	if err := json.Unmarshal(f.kv[store.AgentConfigKey("", app)].value, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Request
}

func putSummary(t *testing.T, f *fakeSource, s contract.Summary) {
	t.Helper()
	b, err := contract.EncodeSummary(s)
	if err != nil {
		t.Fatal(err)
	}
	f.putKV(contract.SummaryKey("", s.App, s.Node), b)
}

// The comparison reuses the answers to the gate's request (their windows
// cover the hold) instead of asking again; only answers to that request
// with a window count.
func TestSamplesReuseTheGatesRequest(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.kv[store.AgentConfigKey("", "app")] = kvEntry{value: []byte(`{"app":"app"}`), index: 3}
	// Every agent wrote a summary before (a status change): all answer.
	for _, n := range []string{"n1", "n2", "n3"} {
		putSummary(t, f, contract.Summary{App: "app", Node: n, Version: "1.0.0", Request: "old"})
	}
	w := startFake(t, f, testConfig())
	r := &scheduler.Rollout{App: "app", ID: "r1"}
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

	// The gate of group B's last stage asks n1 (group B).
	agentAnswers(t, f, "app", []string{"n1"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := w.Summaries(ctx, r, devices[:1]); err != nil {
		t.Fatal(err)
	}
	cancel()
	gate := requestOf(t, f, "app")
	if gate == "" {
		t.Fatal("the gate made no request")
	}
	// n1 answers with a window; n2 (group A) answers too; n3 only
	// answered an older request.
	putSummary(t, f, contract.Summary{App: "app", Node: "n1", Version: "2.0.0", Request: gate, At: at, Window: &contract.Window{
		Samples: 3, Requests: f64(300), Errors: f64(3), LatencyMS: []float64{50, 52, 61}, ProbeOK: 9, ProbeTotal: 10, CPUPercent: f64(40),
	}})
	putSummary(t, f, contract.Summary{App: "app", Node: "n2", Version: "1.0.0", Request: gate, At: at, Window: &contract.Window{Samples: 2, LatencyMS: []float64{80, 81}}})

	old := scheduler.SummaryWait
	scheduler.SummaryWait = 300 * time.Millisecond
	defer func() { scheduler.SummaryWait = old }()
	got, err := w.Samples(context.Background(), r, devices[:3])
	if err != nil {
		t.Fatal(err)
	}
	if again := requestOf(t, f, "app"); again != gate {
		t.Errorf("the comparison asked again (%q after the gate's %q): new windows of seconds", again, gate)
	}
	if len(got) != 2 {
		t.Fatalf("samples of %d devices (%+v), want n1 and n2", len(got), got)
	}
	j := got["id-1"]
	if !j.HasRequests || j.Requests != 300 || j.Errors != 3 || j.ProbeOK != 9 || len(j.LatencyMS) != 3 || j.Version != "2.0.0" || !j.At.Equal(at) || *j.CPUPercent != 40 {
		t.Errorf("n1's sample %+v", j)
	}
	if s := got["id-2"]; s.HasRequests || len(s.LatencyMS) != 2 {
		t.Errorf("n2's sample %+v: want latency only", s)
	}

	// Another run has made no request: it asks.
	if _, err := w.Samples(context.Background(), &scheduler.Rollout{App: "app", ID: "r2"}, devices[:1]); err != nil {
		t.Fatal(err)
	}
	if again := requestOf(t, f, "app"); again == gate || again == "" {
		t.Errorf("a run without a request of its own did not ask (request %q)", again)
	}
}

// Without summaries (no agent configuration) there is no evidence: no
// samples, no error, and the comparison says "not enough data".
func TestSamplesNothingYet(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	got, err := w.Samples(context.Background(), &scheduler.Rollout{App: "app", ID: "r1"}, devices[:1])
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v: want nothing", got, err)
	}
	recs := []*scheduler.DeviceRecord{{DeviceRef: scheduler.DeviceRef{ID: "id-1", Class: "x"}}}
	cmp := scheduler.CompareGroups(&scheduler.AB{}, "1", "2", time.Time{}, recs, recs, got)
	if cmp.Verdict != scheduler.ABNotEnoughData {
		t.Errorf("verdict %q without evidence, want not enough data", cmp.Verdict)
	}
}
