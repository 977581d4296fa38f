package checks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeSource answers like Nomad and Consul do: one global index, blocking
// calls that return when it passes the wait index or the wait time ends.
type fakeSource struct {
	mu      sync.Mutex
	index   uint64
	changed chan struct{}
	nodes   []nodeInfo
	checks  []checkInfo
	jobs    map[string]jobView
	allocs  map[string][]allocInfo
	fail    map[string]error // by kind
	hold    map[string]chan struct{}
	calls   map[string]int
	filters []string
	kv      map[string]kvEntry
	// casConflicts makes that many CAS writes fail as if the key changed.
	casConflicts int
}

type kvEntry struct {
	value []byte
	index uint64
}

func newFakeSource() *fakeSource {
	return &fakeSource{
		index:   10,
		changed: make(chan struct{}),
		jobs:    map[string]jobView{},
		allocs:  map[string][]allocInfo{},
		fail:    map[string]error{},
		hold:    map[string]chan struct{}{},
		calls:   map[string]int{},
		kv:      map[string]kvEntry{},
	}
}

func (f *fakeSource) GetKV(ctx context.Context, key string) ([]byte, uint64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["kv-get"]++
	if err := f.fail["kv"]; err != nil {
		return nil, 0, false, err
	}
	e, ok := f.kv[key]
	return e.value, e.index, ok, nil
}

func (f *fakeSource) CASKV(ctx context.Context, key string, value []byte, index uint64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["kv-cas"]++
	if f.casConflicts > 0 {
		f.casConflicts--
		return false, nil
	}
	if e, ok := f.kv[key]; ok && e.index != index || !ok && index != 0 {
		return false, nil
	}
	f.index++
	f.kv[key] = kvEntry{value: value, index: f.index}
	close(f.changed)
	f.changed = make(chan struct{})
	return true, nil
}

// putKV writes a key (as an agent would) and wakes the blocked calls.
func (f *fakeSource) putKV(key string, value []byte) {
	f.update(func() { f.kv[key] = kvEntry{value: value, index: f.index + 1} })
}

func (f *fakeSource) ListKV(ctx context.Context, prefix string, q query) ([]kvPair, uint64, error) {
	idx, err := f.block(ctx, "kv", q)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []kvPair
	for k, e := range f.kv {
		if strings.HasPrefix(k, prefix) {
			out = append(out, kvPair{Key: k, Value: e.value})
		}
	}
	return out, idx, err
}

// update changes the data under the lock and wakes the blocked calls.
func (f *fakeSource) update(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeSource) totalCalls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

func (f *fakeSource) block(ctx context.Context, kind string, q query) (uint64, error) {
	f.mu.Lock()
	f.calls[kind]++
	hold := f.hold[kind]
	f.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	deadline := time.After(q.waitTime)
	for {
		f.mu.Lock()
		err, idx, ch := f.fail[kind], f.index, f.changed
		f.mu.Unlock()
		if err != nil {
			return 0, err
		}
		if q.waitIndex < idx {
			return idx, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-deadline:
			return idx, nil
		}
	}
}

func (f *fakeSource) Nodes(ctx context.Context, q query) ([]nodeInfo, uint64, error) {
	idx, err := f.block(ctx, "nodes", q)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]nodeInfo(nil), f.nodes...), idx, err
}

func (f *fakeSource) Checks(ctx context.Context, filter string, q query) ([]checkInfo, uint64, error) {
	f.mu.Lock()
	f.filters = append(f.filters, filter)
	f.mu.Unlock()
	idx, err := f.block(ctx, "checks", q)
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]checkInfo(nil), f.checks...), idx, err
}

func (f *fakeSource) Job(ctx context.Context, jobID string, prev jobView) (jobView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["job"]++
	if err := f.fail["job"]; err != nil {
		return prev, err
	}
	return f.jobs[jobID], nil
}

func (f *fakeSource) Allocations(ctx context.Context, jobIDs []string, q query) ([]allocInfo, uint64, error) {
	idx, err := f.block(ctx, "allocs", q)
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []allocInfo
	for _, id := range jobIDs {
		for _, a := range f.allocs[id] {
			a.JobID = id
			out = append(out, a)
		}
	}
	return out, idx, err
}

// lastFilter is the filter of the latest checks call.
func (f *fakeSource) lastFilter() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.filters) == 0 {
		return ""
	}
	return f.filters[len(f.filters)-1]
}

const (
	l3Healthy   = `HTTP GET http://127.0.0.2:2000/health: 200 OK Output: {"status":"healthy","version":"1.0.0","build":"1.0.0+t1"}`
	l3Unhealthy = `HTTP GET http://127.0.0.2:2000/health: 503 Service Unavailable Output: {"status":"unhealthy","version":"1.0.0"}`
)

// fleet is two devices: n1 runs the candidate, n2 is down without one.
func fleet(f *fakeSource) {
	f.nodes = []nodeInfo{{ID: "id-1", Name: "n1", Status: "ready"}, {ID: "id-2", Name: "n2", Status: "down"}, {ID: "id-3", Name: "n3", Status: "ready"}}
	f.checks = []checkInfo{
		{Node: "n1", CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable"},
		{Node: "n2", CheckID: "serfHealth", Name: "Serf Health Status", Status: "critical", Output: "Agent not live or unreachable"},
		{Node: "n3", CheckID: "serfHealth", Name: "Serf Health Status", Status: "critical"},
		{Node: "n1", CheckID: "agent-l2", Name: "fleetplan L2 system", Status: "passing", Output: "cpu 12% < 90%"},
	}
	f.jobs["app-blue"] = jobView{Found: true, Latest: 1, Versions: map[uint64]string{0: "0.9.0+t0", 1: "1.0.0+t1"}, Services: []string{"app"}}
	f.allocs["app-blue"] = []allocInfo{
		{ID: "old-alloc", NodeID: "id-1", ClientStatus: "complete", DesiredStatus: "stop", JobVersion: 0, CreateIndex: 5},
		{ID: "new-alloc", NodeID: "id-1", ClientStatus: "running", DesiredStatus: "run", JobVersion: 1, Restarts: 2, CreateIndex: 9},
		{ID: "n3-alloc", NodeID: "id-3", ClientStatus: "running", DesiredStatus: "run", JobVersion: 1, CreateIndex: 9},
	}
	tags := []string{contract.SlotTag("blue")}
	f.checks = append(f.checks,
		checkInfo{Node: "n1", CheckID: "c-new", Name: "fleetplan L3 application", Status: "passing", Output: l3Healthy,
			ServiceID: "_nomad-task-new-alloc-app-app-http", ServiceName: "app", ServiceTags: tags},
		// The replaced allocation's registration lingers: it must not count.
		checkInfo{Node: "n1", CheckID: "c-old", Name: "fleetplan L3 application", Status: "critical", Output: "connection refused",
			ServiceID: "_nomad-task-old-alloc-app-app-http", ServiceName: "app", ServiceTags: tags},
		// The other slot's instance on the same node does not count.
		checkInfo{Node: "n1", CheckID: "c-green", Name: "fleetplan L3 application", Status: "critical", Output: "connection refused",
			ServiceID: "_nomad-task-new-alloc-app-app-http-green", ServiceName: "app", ServiceTags: []string{contract.SlotTag("green")}},
	)
}

// checkAt finds a check of the fake by check ID.
func (f *fakeSource) checkAt(id string) *checkInfo {
	for i := range f.checks {
		if f.checks[i].CheckID == id {
			return &f.checks[i]
		}
	}
	return nil
}

func testConfig() Config {
	return Config{
		Timing:     Timing{MinInterval: time.Millisecond, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, WaitTime: 10 * time.Second},
		StaleAfter: 300 * time.Millisecond,
	}
}

func startFake(t *testing.T, f *fakeSource, cfg Config) *Watcher {
	t.Helper()
	w := newWatcher(f, nil, blocking.Clock{}, WithConfig(cfg))
	t.Cleanup(w.Stop)
	return w
}

var (
	blueRollout = &scheduler.Rollout{App: "app", Candidate: "blue"}
	devices     = []scheduler.DeviceRef{{ID: "id-1", Name: "n1"}, {ID: "id-2", Name: "n2"}, {ID: "id-3", Name: "n3"}, {ID: "id-9", Name: "n9"}}
)

func health(t *testing.T, w *Watcher) map[string]scheduler.DeviceHealth {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	h, err := w.Health(ctx, blueRollout, devices)
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	return h
}

func TestHealthFromCaches(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	got := health(t, w)
	want := map[string]scheduler.DeviceHealth{
		"id-1": {
			Online: true,
			Alloc:  &scheduler.AllocHealth{ID: "new-alloc", Status: "running", Restarts: 2, Version: "1.0.0+t1"},
			Checks: []scheduler.CheckResult{
				{Name: "serfHealth", Layer: 1, Status: "passing", Output: "Agent alive and reachable"},
				{Name: "fleetplan L2 system", Layer: 2, Status: "passing", Output: "cpu 12% < 90%"},
				{Name: "fleetplan L3 application", Layer: 3, Status: "passing", Output: l3Healthy},
			},
			Version: "1.0.0",
		},
		"id-2": {Checks: []scheduler.CheckResult{{Name: "serfHealth", Layer: 1, Status: "critical", Output: "Agent not live or unreachable"}}},
		// Nomad says ready but the Consul agent is gone: not online.
		"id-3": {
			Alloc:  &scheduler.AllocHealth{ID: "n3-alloc", Status: "running", Version: "1.0.0+t1"},
			Checks: []scheduler.CheckResult{{Name: "serfHealth", Layer: 1, Status: "critical"}},
		},
		"id-9": {},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Health:\n got %+v\nwant %+v", got, want)
	}

	// A device known by name only.
	h, err := w.Health(context.Background(), blueRollout, []scheduler.DeviceRef{{Name: "n1"}})
	if err != nil || !h["n1"].Online || h["n1"].Alloc == nil {
		t.Errorf("by name: %+v, %v", h, err)
	}
}

func TestHealthFollowsChanges(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	health(t, w)
	f.update(func() {
		c := f.checkAt("c-new")
		c.Status, c.Output = "critical", l3Unhealthy
		f.nodes[0].Status = "down"
	})
	deadline := time.Now().Add(3 * time.Second)
	for {
		h := health(t, w)["id-1"]
		if !h.Online && len(h.Checks) == 3 && h.Checks[2].Status == "critical" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("change not seen: %+v", h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHealthWaitsForFirstAnswers(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	hold := make(chan struct{})
	f.hold["allocs"] = hold
	w := startFake(t, f, testConfig())

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	h, err := w.Health(ctx, blueRollout, devices)
	if !errors.Is(err, context.DeadlineExceeded) || h != nil {
		t.Fatalf("Health before the allocations answered = %v, %v; want no verdict and the deadline", h, err)
	}
	close(hold)
	if got := health(t, w)["id-1"].Alloc; got == nil || got.ID != "new-alloc" {
		t.Errorf("alloc = %+v", got)
	}
}

func TestHealthWaitsForServiceWatches(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	hold := make(chan struct{})
	f.hold["checks"] = hold
	w := startFake(t, f, testConfig())
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if _, err := w.Health(ctx, blueRollout, devices); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Health before the service answered: %v", err)
	}
	close(hold)
	if h := health(t, w)["id-1"]; h.Version != "1.0.0" {
		t.Errorf("health = %+v", h)
	}
}

func TestHealthWaitsForJobVersion(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	// The allocations already run version 2; the job watch has not seen it.
	f.allocs["app-blue"][1].JobVersion = 2
	w := startFake(t, f, testConfig())
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.update(func() {
			f.jobs["app-blue"] = jobView{Found: true, Latest: 2, Versions: map[uint64]string{2: "2.0.0+t2"}, Services: []string{"app"}}
		})
	}()
	if a := health(t, w)["id-1"].Alloc; a == nil || a.Version != "2.0.0+t2" {
		t.Errorf("alloc = %+v", a)
	}
}

func TestHealthStale(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	health(t, w)

	// Consul goes away: the last good data is served until StaleAfter ...
	f.update(func() { f.fail["checks"] = errors.New("connection refused") })
	start := time.Now()
	h, err := w.Health(context.Background(), blueRollout, devices)
	if time.Since(start) < 250*time.Millisecond {
		if err != nil || !h["id-1"].Online {
			t.Fatalf("fresh failure: %+v, %v; want the last good data", h["id-1"], err)
		}
	}
	// ... then Health says stale, not "offline".
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, err = w.Health(context.Background(), blueRollout, devices)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never stale")
		}
		time.Sleep(20 * time.Millisecond)
	}
	var se *StaleError
	if !errors.Is(err, ErrStale) || !errors.As(err, &se) || se.Watch != "consul-checks" {
		t.Fatalf("err = %v", err)
	}
	// I5: stale data is the control plane's, never a device's.
	if !errors.Is(err, scheduler.ErrControlPlane) {
		t.Fatalf("err = %v does not match scheduler.ErrControlPlane", err)
	}

	// Back: answers again.
	f.update(func() { delete(f.fail, "checks") })
	deadline = time.Now().Add(3 * time.Second)
	for {
		h, err = w.Health(context.Background(), blueRollout, devices)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still stale: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !h["id-1"].Online {
		t.Errorf("after recovery: %+v", h["id-1"])
	}
}

func TestHealthStaleBeforeFirstAnswer(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.fail["nodes"] = errors.New("nomad down")
	w := startFake(t, f, testConfig())
	_, err := w.Health(context.Background(), blueRollout, devices)
	if !errors.Is(err, ErrStale) {
		t.Fatalf("err = %v", err)
	}
}

func TestHealthCallsNoSource(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := startFake(t, f, testConfig())
	health(t, w)
	time.Sleep(50 * time.Millisecond) // every loop parked in its blocking call
	before, fetches := f.totalCalls(), w.fetches()
	for range 50 {
		health(t, w)
	}
	if after := f.totalCalls(); after != before {
		t.Errorf("50 Health calls made %d source calls", after-before)
	}
	if w.fetches() != fetches {
		t.Errorf("fetches moved")
	}
	// Nodes, checks, allocations (blocking) and the job's versions.
	if n := len(f.calls); n != 4 {
		t.Errorf("kinds of calls: %v", f.calls)
	}
	if !strings.Contains(f.lastFilter(), `(ServiceName == "app" and "fleetplan-slot=blue" in ServiceTags)`) {
		t.Errorf("checks filter does not follow the slot service: %s", f.lastFilter())
	}
}

// The watcher keeps three blocking queries open, however many slot jobs
// it follows and however large the fleet.
func TestOpenLongPollsConstant(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	for i := range 500 {
		n := fmt.Sprintf("m%d", i)
		f.nodes = append(f.nodes, nodeInfo{ID: "id-" + n, Name: n, Status: "ready"})
		f.checks = append(f.checks, checkInfo{Node: n, CheckID: "serfHealth", Status: "passing", ModifyIndex: 3})
	}
	f.jobs["app-green"] = jobView{Found: true, Latest: 0, Versions: map[uint64]string{0: "0.9.0"}, Services: []string{"app", "app-metrics"}}
	w := startFake(t, f, testConfig())
	health(t, w)
	green := &scheduler.Rollout{App: "app", Candidate: "green"}
	if _, err := w.Health(context.Background(), green, devices); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for w.OpenLongPolls() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("open long-polls = %d, want 3", w.OpenLongPolls())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A change wakes them; they settle back to three.
	f.update(func() { f.checkAt("c-new").Status = "warning" })
	for {
		h := health(t, w)["id-1"]
		if len(h.Checks) == 3 && h.Checks[2].Status == "warning" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("change not seen: %+v", h)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := w.OpenLongPolls(); n > 3 {
		t.Errorf("open long-polls = %d, want at most 3", n)
	}
}

func TestHealthAfterStop(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	w := newWatcher(f, nil, blocking.Clock{}, WithConfig(testConfig()))
	health(t, w)
	w.Stop()
	if _, err := w.Health(context.Background(), blueRollout, devices); !errors.Is(err, ErrStopped) {
		t.Errorf("err = %v", err)
	}
	if err := w.WatchJob("x-blue", "blue"); !errors.Is(err, ErrStopped) {
		t.Errorf("err = %v", err)
	}
}

func TestHealthBadRollout(t *testing.T) {
	w := startFake(t, newFakeSource(), testConfig())
	if _, err := w.Health(context.Background(), &scheduler.Rollout{App: "x"}, nil); err == nil {
		t.Error("no error for a rollout without candidate")
	}
}

func TestPickAlloc(t *testing.T) {
	latest := jobView{Found: true, Latest: 4}
	tests := []struct {
		name   string
		view   jobView
		allocs []allocInfo
		want   string // "" for none
	}{
		{"newest running", latest, []allocInfo{{ID: "a", ClientStatus: "running", DesiredStatus: "run", JobVersion: 4, CreateIndex: 1}, {ID: "b", ClientStatus: "running", DesiredStatus: "run", JobVersion: 4, CreateIndex: 2}}, "b"},
		{"running over newer failed", latest, []allocInfo{{ID: "a", ClientStatus: "running", DesiredStatus: "run", JobVersion: 4, CreateIndex: 1}, {ID: "b", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 4, CreateIndex: 2}}, "a"},
		{"pending replacement over stopping", latest, []allocInfo{{ID: "a", ClientStatus: "running", DesiredStatus: "stop", JobVersion: 4, CreateIndex: 3}, {ID: "b", ClientStatus: "pending", DesiredStatus: "run", JobVersion: 4, CreateIndex: 2}}, "b"},
		{"stopping over ended", latest, []allocInfo{{ID: "a", ClientStatus: "running", DesiredStatus: "stop", JobVersion: 4, CreateIndex: 1}, {ID: "b", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 4, CreateIndex: 2}}, "a"},
		{"stopped by Nomad is nobody's verdict", latest, []allocInfo{{ID: "a", ClientStatus: "complete", DesiredStatus: "stop", JobVersion: 4, CreateIndex: 1}, {ID: "b", ClientStatus: "complete", DesiredStatus: "evict", JobVersion: 4, CreateIndex: 2}}, ""},
		{"exited by itself counts", latest, []allocInfo{{ID: "a", ClientStatus: "complete", DesiredStatus: "run", JobVersion: 4, CreateIndex: 1}}, "a"},
		{"disconnected counts as live", latest, []allocInfo{{ID: "a", ClientStatus: "unknown", DesiredStatus: "run", JobVersion: 4, CreateIndex: 1}, {ID: "b", ClientStatus: "lost", DesiredStatus: "stop", JobVersion: 4, CreateIndex: 2}}, "a"},
		{"all ended: newest of the latest version", latest, []allocInfo{{ID: "a", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 4, CreateIndex: 5}, {ID: "b", ClientStatus: "complete", DesiredStatus: "run", JobVersion: 4, CreateIndex: 2}}, "a"},
		{"a running older version still counts", latest, []allocInfo{{ID: "a", ClientStatus: "running", DesiredStatus: "run", JobVersion: 3, CreateIndex: 5}}, "a"},
		{"an ended older version is a previous rollout's", latest, []allocInfo{{ID: "a", ClientStatus: "complete", DesiredStatus: "run", JobVersion: 3, CreateIndex: 5}, {ID: "b", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 1, CreateIndex: 7}}, ""},
		{"job unknown: ended allocations count", jobView{}, []allocInfo{{ID: "a", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 3, CreateIndex: 5}}, "a"},
		{"none", latest, nil, ""},
	}
	for _, tt := range tests {
		a, ok := pickAlloc(tt.allocs, tt.view)
		if got := a.ID; got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: picked %q (%v), want %q", tt.name, got, ok, tt.want)
		}
	}
}

func TestInstanceOf(t *testing.T) {
	if !instanceOf("_nomad-task-1234-abcd-web-web-http", "1234-abcd") {
		t.Error("own instance")
	}
	if instanceOf("_nomad-task-9999-web-web-http", "1234-abcd") {
		t.Error("other allocation's instance")
	}
	if !instanceOf("web-1", "1234") {
		t.Error("non-Nomad registration")
	}
}

func TestViewOfVersions(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	s := func(v string) *string { return &v }
	versions := []*nomadapi.Job{
		{ID: s("app-blue"), Name: s("app-blue"), Version: u(3), Meta: map[string]string{contract.MetaVersion: "2.0.0+r2"},
			TaskGroups: []*nomadapi.TaskGroup{{
				Name:     s("app"),
				Services: []*nomadapi.Service{{Name: "app"}, {Name: "${NOMAD_JOB_NAME}-metrics"}, {Name: "nomad-native", Provider: "nomad"}, {Name: "node-${node.unique.name}"}},
				Tasks:    []*nomadapi.Task{{Name: "srv", Services: []*nomadapi.Service{{Name: "${TASK}-api"}, {}}}},
			}}},
		{ID: s("app-blue"), Name: s("app-blue"), Version: u(2), Meta: map[string]string{contract.MetaVersion: "1.0.0+r1"},
			TaskGroups: []*nomadapi.TaskGroup{{Name: s("app"), Services: []*nomadapi.Service{{Name: "app-old"}}}}},
	}
	got := viewOfVersions(versions)
	want := jobView{
		Found:    true,
		Latest:   3,
		Versions: map[uint64]string{3: "2.0.0+r2", 2: "1.0.0+r1"},
		Services: []string{"app", "app-blue-app-srv", "app-blue-metrics", "app-old", "srv-api"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if v := viewOfVersions(nil); v.Found {
		t.Errorf("no versions found: %+v", v)
	}
}

func TestIsNotFound(t *testing.T) {
	if isNotFound(errors.New("404 not found")) {
		t.Error("a string is not a status")
	}
	if isNotFound(nil) {
		t.Error("nil")
	}
}
