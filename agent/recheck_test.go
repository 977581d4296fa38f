package agent

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/contract"
)

// A re-check naming this node runs the probes at once (no Consul check
// ran before it) and answers with a summary carrying its ID, once; one
// naming other nodes is ignored.
func TestRecheckOnDemand(t *testing.T) {
	a, fc := summaryTestAgent(t)
	app := &promApp{}
	app.errPerScrape.Store(30)
	inst := app.start(t)
	mc := testMapping
	setConfig := func(rc *Recheck) {
		a.mu.Lock()
		a.configs = map[string]*AppConfig{"edgeinfer": {App: "edgeinfer", HealthPath: "/health", ExpectVersion: true, Metrics: &mc, MaxErrorRate: 0.05, Recheck: rc}}
		a.mu.Unlock()
		a.pokeSummaries()
	}
	a.mu.Lock()
	a.instances = map[string]Instance{inst.ServiceID: inst}
	a.mu.Unlock()
	a.readyOnce.Do(func() { close(a.ready) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.summaryLoop(ctx)
	key := contract.SummaryKey("", "edgeinfer", "rpi-1")
	answers := func(id string) []contract.Summary {
		var out []contract.Summary
		for _, v := range fc.writes(key) {
			if d, err := contract.DecodeSummary([]byte(v)); err == nil && d.Request == id {
				out = append(out, d)
			}
		}
		return out
	}

	// Another node's re-check: nothing runs, nothing is written.
	setConfig(&Recheck{ID: "rc-other", Nodes: []string{"rpi-2"}})
	// This node's: the probes run (twice, so the error rate has a delta).
	setConfig(&Recheck{ID: "rc-1", Nodes: []string{"rpi-2", "rpi-1"}})
	deadline := time.Now().Add(10 * time.Second)
	for len(answers("rc-1")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary answering rc-1: %q", fc.writes(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
	s := answers("rc-1")[0]
	if s.Version != "2.0.0" || s.Layers[contract.LayerApplication].Status == "" || s.Layers[contract.LayerSystem].Status == "" {
		t.Errorf("the re-check's summary has no fresh verdicts: %+v", s)
	}
	if app.scrapes.Load() == 0 {
		t.Error("the re-check did not read the application's metrics")
	}
	if n := len(answers("rc-other")); n != 0 {
		t.Errorf("%d answers to another node's re-check", n)
	}
	// Answered once: a later poke writes no second answer.
	a.pokeSummaries()
	setConfig(&Recheck{ID: "rc-2", Nodes: []string{"rpi-1"}})
	deadline = time.Now().Add(10 * time.Second)
	for len(answers("rc-2")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no summary answering rc-2: %q", fc.writes(key))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(answers("rc-1")); n != 1 {
		t.Errorf("rc-1 answered %d times, want once", n)
	}
}

// The controller writes the re-check under checks.RecheckField.
func TestRecheckFieldName(t *testing.T) {
	b, err := json.Marshal(AppConfig{App: "x", Recheck: &Recheck{ID: "r", Nodes: []string{"n"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"`+checks.RecheckField+`":{"id":"r","nodes":["n"]}`) {
		t.Errorf("AppConfig JSON %s has no %q field as the controller writes it", b, checks.RecheckField)
	}
}
