package checks

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
)

// fakeHTTP serves canned Nomad and Consul answers and counts the calls.
type fakeHTTP struct {
	mu     sync.Mutex
	calls  map[string]int
	routes map[string]func(w http.ResponseWriter, r *http.Request)
}

func (f *fakeHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls[r.URL.Path]++
	h := f.routes[r.URL.Path]
	f.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

func serveJSON(index, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Nomad-Index", index)
		w.Header().Set("X-Consul-Index", index)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}
}

func newHTTPSource(t testing.TB, routes map[string]func(http.ResponseWriter, *http.Request)) (apiSource, *fakeHTTP) {
	t.Helper()
	f := &fakeHTTP{calls: map[string]int{}, routes: routes}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := consulapi.NewClient(&consulapi.Config{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	return apiSource{nomad: nc, consul: cc}, f
}

func TestAPISourceJob(t *testing.T) {
	src, f := newHTTPSource(t, map[string]func(http.ResponseWriter, *http.Request){
		"/v1/jobs": serveJSON("40", `[{"ID":"app-blue2","CreateIndex":1,"JobModifyIndex":2},{"ID":"app-blue","CreateIndex":30,"JobModifyIndex":38}]`),
		"/v1/job/app-blue/versions": serveJSON("40", `{"Versions":[
			{"ID":"app-blue","Name":"app-blue","Version":1,"Meta":{"fleetplan_version":"1.0.0+t1"},
			 "TaskGroups":[{"Name":"app","Services":[{"Name":"app","Provider":"consul"}]}]}]}`),
	})
	ctx := context.Background()
	v, err := src.Job(ctx, "app-blue", jobView{})
	if err != nil || !v.Found || v.Versions[1] != "1.0.0+t1" || v.CreateIndex != 30 || v.JobModifyIndex != 38 || len(v.Services) != 1 {
		t.Fatalf("Job = %+v, %v", v, err)
	}
	// Unchanged job: no versions call.
	if _, err := src.Job(ctx, "app-blue", v); err != nil {
		t.Fatal(err)
	}
	if n := f.calls["/v1/job/app-blue/versions"]; n != 1 {
		t.Errorf("versions called %d times, want 1", n)
	}
	// Absent job.
	v, err = src.Job(ctx, "other-blue", v)
	if err != nil || v.Found {
		t.Errorf("absent job: %+v, %v", v, err)
	}
}

func TestAPISourceJobPurgedBetweenCalls(t *testing.T) {
	src, _ := newHTTPSource(t, map[string]func(http.ResponseWriter, *http.Request){
		"/v1/jobs": serveJSON("40", `[{"ID":"app-blue","CreateIndex":30,"JobModifyIndex":38}]`),
		// /v1/job/app-blue/versions: 404
	})
	v, err := src.Job(context.Background(), "app-blue", jobView{})
	if err != nil || v.Found {
		t.Errorf("purged job: %+v, %v", v, err)
	}
}

func TestIsNotFoundOnNomadError(t *testing.T) {
	src, _ := newHTTPSource(t, nil)
	_, _, _, err := src.nomad.Jobs().Versions("nope", false, nil)
	if err == nil || !isNotFound(err) {
		t.Errorf("isNotFound(%v) = false", err)
	}
}

func TestAPISourceAllocationsAndChecks(t *testing.T) {
	src, _ := newHTTPSource(t, map[string]func(http.ResponseWriter, *http.Request){
		"/v1/allocations": func(w http.ResponseWriter, r *http.Request) {
			if got, want := r.URL.Query().Get("filter"), `JobID == "app-blue" or JobID == "app-green"`; got != want {
				t.Errorf("allocations filter = %q, want %q", got, want)
			}
			serveJSON("77", `[{"ID":"a1","JobID":"app-blue","NodeID":"n1","ClientStatus":"running","DesiredStatus":"run","JobVersion":3,"CreateIndex":70,
			"TaskStates":{"t1":{"Restarts":2},"t2":{"Restarts":1}}}]`)(w, r)
		},
		"/v1/health/state/any": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Query().Get("filter") != "F" {
				t.Errorf("filter = %q", r.URL.Query().Get("filter"))
			}
			if r.URL.Query().Get("index") != "12" {
				t.Errorf("index = %q", r.URL.Query().Get("index"))
			}
			serveJSON("91", `[{"Node":"jetson-1","CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing","ModifyIndex":5},
				{"Node":"jetson-1","CheckID":"c1","Name":"fleetplan L3 application","Status":"passing","ServiceID":"s1","ServiceName":"app","ServiceTags":["fleetplan-slot=blue"],"ModifyIndex":9}]`)(w, r)
		},
	})
	ctx := context.Background()
	as, idx, err := src.Allocations(ctx, []string{"app-blue", "app-green"}, query{})
	if err != nil || idx != 77 || len(as) != 1 || as[0].Restarts != 3 || as[0].JobVersion != 3 || as[0].CreateIndex != 70 || as[0].JobID != "app-blue" {
		t.Errorf("Allocations = %+v, %d, %v", as, idx, err)
	}
	cs, idx, err := src.Checks(ctx, "F", query{waitIndex: 12})
	if err != nil || idx != 91 || len(cs) != 2 || cs[0].CheckID != "serfHealth" || cs[1].ServiceName != "app" || cs[1].ServiceTags[0] != contract.SlotTag("blue") || cs[1].ModifyIndex != 9 {
		t.Errorf("Checks = %+v, %d, %v", cs, idx, err)
	}
}

func TestCheckFilter(t *testing.T) {
	got := checkFilter([]string{"fleetplan-agent"}, []slotService{{name: "app", tag: contract.SlotTag("blue")}})
	want := `(ServiceID == "" and (CheckID == "serfHealth" or CheckID == "_node_maintenance" or Name matches "^fleetplan L")) or ` +
		`(ServiceName == "fleetplan-agent" and Name matches "^fleetplan L") or ` +
		`(ServiceName == "app" and "fleetplan-slot=blue" in ServiceTags)`
	if got != want {
		t.Errorf("checkFilter =\n %s\nwant\n %s", got, want)
	}
}
