package command

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/hashicorp/go-hclog"
)

func TestNotifiersSendRollbacksAndApprovals(t *testing.T) {
	var mu sync.Mutex
	var got []plugin.Notification
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n plugin.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("bad payload: %v", err)
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}))
	defer srv.Close()
	n, err := newNotifiers(context.Background(), []string{"webhook:url=" + srv.URL, "log"}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, e := range []scheduler.Event{
		{Time: now, Rollout: "app", Action: "switch", Outcome: "ok", Device: "d1"},
		{Time: now, Rollout: "app", Action: "await-approval", Outcome: "waiting", Detail: "approve with ..."},
		{Time: now, Rollout: "app", Action: "decision:rollback", Outcome: "ok", Detail: "canary failed", Decision: &scheduler.Decision{
			Kind: scheduler.DecisionRollback, Numbers: map[string]float64{"failed": 2},
			Analysis: &scheduler.FailureAnalysis{Kind: scheduler.AnalysisCompatibility, Classes: []string{"rpi"}, Layer: 3, Attempted: 4, Failed: 2, ClassAttempted: 2, ClassFailed: 2},
		}},
	} {
		n.Event(context.Background(), e, "2.0.0")
	}
	n.Close()
	if len(got) != 2 || got[0].Kind != plugin.NotifyApprovalNeeded || got[1].Kind != plugin.NotifyRollback || got[1].Message != "canary failed" || got[1].Version != "2.0.0" {
		t.Fatalf("notifications %+v", got)
	}
	if a := got[1].Analysis; a == nil || a.Kind != "compatibility" || len(a.Classes) != 1 || a.Classes[0] != "rpi" || a.Layer != 3 || !strings.Contains(a.Summary, "node class rpi") || got[1].Numbers["failed"] != 2 {
		t.Fatalf("the rollback notification does not carry the analysis as data: %+v", got[1])
	}
	if !strings.Contains(got[0].Message, "fleetplan approve app") {
		t.Errorf("approval notification %q does not say how to approve", got[0].Message)
	}
	if _, err := newNotifiers(context.Background(), []string{"pager"}, hclog.NewNullLogger()); err == nil {
		t.Fatal("an unknown notifier was accepted")
	}
	if _, err := newNotifiers(context.Background(), []string{"webhook"}, hclog.NewNullLogger()); err == nil {
		t.Fatal("a webhook without url was accepted")
	}
}
