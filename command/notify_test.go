package command

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/notify"
	"github.com/fleetplan/fleetplan/scheduler"
)

// apply's notifiers: each rollout's notify blocks plus the -notify flags,
// and events go to the notifiers of their own rollout.
func TestNotifiersRouteEventsByRollout(t *testing.T) {
	var mu sync.Mutex
	got := map[string][]notify.Notification{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n notify.Notification
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("bad payload: %v", err)
		}
		mu.Lock()
		got[r.URL.Path] = append(got[r.URL.Path], n)
		mu.Unlock()
	}))
	defer srv.Close()
	policies := []*scheduler.Policy{
		{Name: "a", Notify: []scheduler.NotifierSpec{{Type: "webhook", Name: "ops", URL: scheduler.Literal(srv.URL + "/a"), Events: []string{"rollback"}}}},
		{Name: "b"},
	}
	n, err := newNotifiers(context.Background(), nil, policies, []string{"webhook:url=" + srv.URL + "/flag"}, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, e := range []scheduler.Event{
		{Time: now, Rollout: "a", Action: "decision:rollback", Outcome: "ok", Detail: "canary failed"},
		{Time: now, Rollout: "b", Action: "await-approval", Outcome: "waiting"},
		{Time: now, Rollout: "c", Action: "decision:confirmed", Outcome: "ok"}, // no notifiers
	} {
		n.Event(context.Background(), e, "2.0.0")
	}
	n.Close()
	if len(got["/a"]) != 1 || got["/a"][0].Rollout != "a" || got["/a"][0].Kind != "rollback" {
		t.Errorf("policy notifier of a got %+v", got["/a"])
	}
	if len(got["/flag"]) != 2 || got["/flag"][0].Notifier != "flag1" {
		t.Errorf("the -notify flag notifier got %+v, want the events of a and b", got["/flag"])
	}
	if _, err := newNotifiers(context.Background(), nil, policies, []string{"pager"}, hclog.NewNullLogger()); err == nil {
		t.Fatal("an unknown notifier was accepted")
	}
	if _, err := newNotifiers(context.Background(), nil, policies, []string{"webhook"}, hclog.NewNullLogger()); err == nil {
		t.Fatal("a webhook without url was accepted")
	}
}
