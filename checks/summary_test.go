package checks

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

func f64(v float64) *float64 { return &v }

// agentAnswers plays the device agents: once the configuration names a new
// request, each listed node writes its summary for it.
func agentAnswers(t *testing.T, f *fakeSource, app string, nodes []string) {
	t.Helper()
	key := store.AgentConfigKey("", app)
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			f.mu.Lock()
			e := f.kv[key]
			f.mu.Unlock()
			var doc struct {
				Request string `json:"summary_request"`
			}
			if json.Unmarshal(e.value, &doc) == nil && doc.Request != "" {
				for _, n := range nodes {
					b, err := contract.EncodeSummary(contract.Summary{App: app, Node: n, Version: "2.0.0", Request: doc.Request,
						Current:  &contract.Metrics{ErrorRate: f64(0.01), P95LatencyMS: f64(12)},
						Baseline: &contract.Metrics{ErrorRate: f64(0.02), P95LatencyMS: f64(10)}, BaselineVersion: "1.0.0",
						Layers: map[string]contract.LayerStatus{contract.LayerApplication: {Status: "passing"}}})
					if err != nil {
						t.Error(err)
						return
					}
					f.putKV(contract.SummaryKey("", app, n), b)
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
}

func TestSummariesRequestAndCollect(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	cfgKey := store.AgentConfigKey("", "app")
	f.kv[cfgKey] = kvEntry{value: []byte(`{"app":"app","layers":{"system":{"max_cpu":90}},"future_field":[1,2]}`), index: 3}
	// n3 answered an earlier request: that is not an answer to this one.
	old, _ := contract.EncodeSummary(contract.Summary{App: "app", Node: "n3", Version: "2.0.0", Request: "old", Current: &contract.Metrics{ErrorRate: f64(0.9)}})
	f.kv[contract.SummaryKey("", "app", "n3")] = kvEntry{value: old, index: 4}
	// n1 and n2 wrote summaries before (on a status change): their agents
	// answer requests.
	f.kv[contract.SummaryKey("", "app", "n1")] = kvEntry{value: old, index: 4}
	f.kv[contract.SummaryKey("", "app", "n2")] = kvEntry{value: old, index: 4}
	f.casConflicts = 1 // the configuration changes under the first write
	agentAnswers(t, f, "app", []string{"n1", "n2"})

	w := startFake(t, f, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	got, err := w.Summaries(ctx, &scheduler.Rollout{App: "app", ID: "r1"}, devices[:3])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("summaries of %d devices, want n1 and n2: %+v", len(got), got)
	}
	s := got["id-1"]
	if s.Version != "2.0.0" || s.Current == nil || s.Current.P95LatencyMS != 12 || s.Baseline == nil || s.Baseline.ErrorRate != 0.02 ||
		s.BaselineVersion != "1.0.0" || s.Layers[contract.LayerApplication] != "passing" {
		t.Errorf("n1's summary: %+v", s)
	}
	if _, ok := got["id-3"]; ok {
		t.Error("n3's answer to another request counted")
	}
	// The request kept every field of the configuration.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(f.kv[cfgKey].value, &doc); err != nil {
		t.Fatal(err)
	}
	if string(doc["future_field"]) != "[1,2]" || !strings.Contains(string(doc["layers"]), `"max_cpu":90`) || !strings.HasPrefix(string(doc[SummaryRequestField]), `"r1-`) {
		t.Errorf("configuration after the request: %s", f.kv[cfgKey].value)
	}
	if f.calls["kv-cas"] != 2 {
		t.Errorf("%d check-and-set writes, want 2 (one conflict)", f.calls["kv-cas"])
	}
}

func TestSummariesAllAnswered(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.kv[store.AgentConfigKey("", "app")] = kvEntry{value: []byte(`{"app":"app"}`), index: 3}
	f.kv[contract.SummaryKey("", "app", "n1")] = kvEntry{value: []byte(`{}`), index: 4}
	f.kv[contract.SummaryKey("", "app", "n2")] = kvEntry{value: []byte(`{}`), index: 4}
	agentAnswers(t, f, "app", []string{"n1", "n2"})
	w := startFake(t, f, testConfig())
	// Everyone asked answers: no need to wait for the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := w.Summaries(ctx, &scheduler.Rollout{App: "app", ID: "r1"}, devices[:2])
	if err != nil || len(got) != 2 || ctx.Err() != nil {
		t.Fatalf("got %d summaries, %v (ctx %v)", len(got), err, ctx.Err())
	}
}

// Devices whose agents never wrote a summary are not waited for.
func TestSummariesNoCapableAgent(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.kv[store.AgentConfigKey("", "app")] = kvEntry{value: []byte(`{"app":"app"}`), index: 3}
	w := startFake(t, f, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, err := w.Summaries(ctx, &scheduler.Rollout{App: "app", ID: "r1"}, devices)
	if err != nil || len(got) != 0 || ctx.Err() != nil {
		t.Fatalf("got %v, %v (ctx %v); want no summary, at once", got, err, ctx.Err())
	}
}

func TestSummariesWithoutAgentConfig(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	got, err := w.Summaries(context.Background(), &scheduler.Rollout{App: "app", ID: "r1"}, devices)
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no summary and no error (nobody to ask)", got, err)
	}
	if f.calls["kv-cas"] != 0 {
		t.Error("a request was written without an agent configuration")
	}
}

func TestSummariesStoreDown(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.kv[store.AgentConfigKey("", "app")] = kvEntry{value: []byte(`{}`), index: 3}
	f.fail["kv"] = errors.New("500 no leader")
	w := startFake(t, f, testConfig())
	_, err := w.Summaries(context.Background(), &scheduler.Rollout{App: "app", ID: "r1"}, devices)
	if err == nil || !strings.Contains(err.Error(), "no leader") {
		t.Fatalf("err = %v", err)
	}
}

// A re-check writes {"id","nodes"} into the agent configuration (keeping
// the other fields) and collects the named devices' answers to it.
func TestRecheckCollectsTheNamedDevices(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	cfgKey := store.AgentConfigKey("", "app")
	f.kv[cfgKey] = kvEntry{value: []byte(`{"app":"app","summary_request":"r0"}`), index: 3}
	old, _ := contract.EncodeSummary(contract.Summary{App: "app", Node: "n1", Request: "r0"})
	f.kv[contract.SummaryKey("", "app", "n1")] = kvEntry{value: old, index: 4}
	f.kv[contract.SummaryKey("", "app", "n2")] = kvEntry{value: old, index: 4}
	go func() {
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			f.mu.Lock()
			e := f.kv[cfgKey]
			f.mu.Unlock()
			var doc struct {
				Recheck struct {
					ID    string   `json:"id"`
					Nodes []string `json:"nodes"`
				} `json:"recheck"`
			}
			if json.Unmarshal(e.value, &doc) == nil && doc.Recheck.ID != "" {
				for _, n := range doc.Recheck.Nodes {
					b, _ := contract.EncodeSummary(contract.Summary{App: "app", Node: n, Version: "2.0.0", Request: doc.Recheck.ID,
						Layers: map[string]contract.LayerStatus{contract.LayerApplication: {Status: "critical", Reason: "error rate 0.2"}}})
					f.putKV(contract.SummaryKey("", "app", n), b)
				}
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	w := startFake(t, f, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	got, err := w.Recheck(ctx, "app", []string{"n2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["n2"].Layers[contract.LayerApplication].Reason != "error rate 0.2" {
		t.Fatalf("re-check answers: %+v", got)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(f.kv[cfgKey].value, &doc); err != nil {
		t.Fatal(err)
	}
	if string(doc[SummaryRequestField]) != `"r0"` || !strings.Contains(string(doc[RecheckField]), `"nodes":["n2"]`) {
		t.Errorf("configuration after the re-check: %s", f.kv[cfgKey].value)
	}
}

// LatestSummary reads one device's summary as it stands, with the layers'
// reasons and the allocation.
func TestLatestSummary(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	b, _ := contract.EncodeSummary(contract.Summary{App: "app", Node: "n1", Version: "2.0.0", AllocID: "a-2",
		Layers: map[string]contract.LayerStatus{contract.LayerFunctional: {Status: "critical", Reason: "max 250ms exceeded"}}})
	f.kv[contract.SummaryKey("", "app", "n1")] = kvEntry{value: b, index: 4}
	w := startFake(t, f, testConfig())
	r := &scheduler.Rollout{App: "app"}
	s, found, err := w.LatestSummary(context.Background(), r, scheduler.DeviceRef{ID: "id-1", Name: "n1"})
	if err != nil || !found {
		t.Fatalf("LatestSummary: found %v, %v", found, err)
	}
	if s.AllocID != "a-2" || s.Layers[contract.LayerFunctional] != "critical" || s.Reasons[contract.LayerFunctional] != "max 250ms exceeded" {
		t.Errorf("summary %+v", s)
	}
	if _, found, err := w.LatestSummary(context.Background(), r, scheduler.DeviceRef{ID: "id-2", Name: "n2"}); found || err != nil {
		t.Errorf("a device without a summary: found %v, %v", found, err)
	}
}
