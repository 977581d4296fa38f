package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeNomad answers the few endpoints a switch uses, for the failure modes
// the dev cluster cannot produce on demand. The integration tests cover the
// real behaviour.
type fakeNomad struct {
	mu      sync.Mutex
	status  string            // node status
	meta    map[string]string // the server's view of the node meta
	index   uint64
	allocs  []*api.Allocation
	stopped []string

	// apply handles POST /v1/client/metadata (default: the server sees the
	// value after syncDelay).
	apply     func(w http.ResponseWriter, req *api.NodeMetaApplyRequest)
	syncDelay time.Duration
	// read handles GET /v1/client/metadata (default 200).
	read func(w http.ResponseWriter)
	// afterApply, when set, replaces the node status once an apply failed.
	statusAfterApply string
	known            bool
}

const fakeNodeID = "f00dcafe-0000-0000-0000-000000000001"

func newFake(t *testing.T) (*fakeNomad, *Nomad) {
	f := &fakeNomad{status: api.NodeStatusReady, meta: map[string]string{"fleet": "vision"}, index: 10, known: true}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	nc, err := api.NewClient(&api.Config{Address: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	p := edgeinferPolicy()
	n := NewNomad(nc, p, edgeinferJob(), hclog.NewNullLogger())
	n.SyncTimeout, n.CallTimeout = 2*time.Second, 300*time.Millisecond
	return f, n
}

func (f *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(v any) {
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(f.index, 10))
		_ = json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.URL.Path == "/v1/node/"+fakeNodeID:
		if !f.known {
			http.Error(w, "node not found", http.StatusNotFound)
			return
		}
		reply(&api.Node{ID: fakeNodeID, Name: "dev-1", Status: f.status, Meta: f.meta})
	case r.URL.Path == "/v1/client/metadata" && r.Method == http.MethodPost:
		var req api.NodeMetaApplyRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if f.apply != nil {
			f.mu.Unlock()
			f.apply(w, &req)
			f.mu.Lock()
			if f.statusAfterApply != "" {
				f.status = f.statusAfterApply
			}
			return
		}
		go func() {
			time.Sleep(f.syncDelay)
			f.mu.Lock()
			defer f.mu.Unlock()
			for k, v := range req.Meta {
				if v == nil {
					delete(f.meta, k)
				} else {
					f.meta[k] = *v
				}
			}
			f.index++
		}()
		reply(&api.NodeMetaResponse{})
	case r.URL.Path == "/v1/client/metadata":
		if f.read != nil {
			f.read(w)
			return
		}
		reply(&api.NodeMetaResponse{})
	case r.URL.Path == "/v1/node/"+fakeNodeID+"/allocations":
		reply(f.allocs)
	case strings.HasPrefix(r.URL.Path, "/v1/allocation/") && strings.HasSuffix(r.URL.Path, "/stop"):
		f.stopped = append(f.stopped, strings.Split(r.URL.Path, "/")[3])
		reply(&api.AllocStopResponse{EvalID: "e"})
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
	}
}

var fakeDev = scheduler.DeviceRef{ID: fakeNodeID, Name: "dev-1", Class: "rpi"}

func TestSwitchStopsOnlyTheOldSlot(t *testing.T) {
	f, n := newFake(t)
	f.syncDelay = 200 * time.Millisecond
	f.allocs = []*api.Allocation{
		{ID: "blue-run", JobID: "edgeinfer-blue", DesiredStatus: "run", ClientStatus: "running"},
		{ID: "blue-pend", JobID: "edgeinfer-blue", DesiredStatus: "run", ClientStatus: "pending"},
		{ID: "blue-old", JobID: "edgeinfer-blue", DesiredStatus: "stop", ClientStatus: "complete"},
		{ID: "blue-fail", JobID: "edgeinfer-blue", DesiredStatus: "run", ClientStatus: "failed"},
		{ID: "green-run", JobID: "edgeinfer-green", DesiredStatus: "run", ClientStatus: "running"},
		{ID: "other", JobID: "edgeinfer-blue-x", DesiredStatus: "run", ClientStatus: "running"},
	}
	if err := n.SwitchDevice(context.Background(), fakeDev, "blue", "green"); err != nil {
		t.Fatal(err)
	}
	if got := f.meta[contract.SlotMetaKey("edgeinfer")]; got != "green" {
		t.Errorf("slot meta = %q", got)
	}
	if want := []string{"blue-run", "blue-pend"}; !slices.Equal(f.stopped, want) {
		t.Errorf("stopped %v, want %v", f.stopped, want)
	}

	// Blue-green: the candidate joins, nothing stops.
	f.stopped = nil
	if err := n.SwitchDevice(context.Background(), fakeDev, "green", "blue,green"); err != nil || len(f.stopped) != 0 {
		t.Errorf("blue-green switch: %v, stopped %v", err, f.stopped)
	}
	// Removal.
	if err := n.SwitchDevice(context.Background(), fakeDev, "blue,green", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.meta[contract.SlotMetaKey("edgeinfer")]; ok {
		t.Error("slot meta not removed")
	}
	if want := []string{"blue-run", "blue-pend", "green-run"}; !slices.Equal(f.stopped, want) {
		t.Errorf("stopped %v, want %v", f.stopped, want)
	}
}

func TestSwitchOffline(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(f *fakeNomad, n *Nomad)
		offline bool
		want    string
		step    SwitchStep
	}{
		{
			name:    "no path to node",
			setup:   func(f *fakeNomad, _ *Nomad) { f.apply = status(http.StatusNotFound, "No path to node") },
			offline: true, want: "setting slot metadata on dev-1 (node f00dcafe): the server has no connection", step: StepMetadata,
		},
		{
			name:    "node down",
			setup:   func(f *fakeNomad, _ *Nomad) { f.status = api.NodeStatusDown },
			offline: true, want: "node is down", step: StepLookup,
		},
		{
			name:    "node disconnected",
			setup:   func(f *fakeNomad, _ *Nomad) { f.status = api.NodeStatusDisconnected },
			offline: true, want: "node is disconnected", step: StepLookup,
		},
		{
			name:    "unknown node",
			setup:   func(f *fakeNomad, _ *Nomad) { f.known = false },
			offline: true, want: "Nomad does not know node", step: StepLookup,
		},
		{
			name: "rpc error, then the node is down",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.apply = status(http.StatusInternalServerError, "rpc error: EOF")
				f.statusAfterApply = api.NodeStatusDown
			},
			offline: true, want: "(node is down)", step: StepMetadata,
		},
		{
			name: "client does not answer",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.apply = func(w http.ResponseWriter, _ *api.NodeMetaApplyRequest) { time.Sleep(time.Second) }
			},
			offline: true, want: "the device's client did not answer within 300ms", step: StepMetadata,
		},
		{
			name: "never synced, client gone",
			setup: func(f *fakeNomad, n *Nomad) {
				f.syncDelay, n.SyncTimeout = time.Hour, 300*time.Millisecond
				f.read = func(w http.ResponseWriter) { http.Error(w, "No path to node", http.StatusNotFound) }
			},
			offline: true, want: "not reported within 300ms", step: StepSync,
		},
		{
			name:  "server error",
			setup: func(f *fakeNomad, _ *Nomad) { f.apply = status(http.StatusInternalServerError, "raft is sad") },
			want:  "setting slot metadata on dev-1 (node f00dcafe): Unexpected response code: 500 (raft is sad)", step: StepMetadata,
		},
		{
			name:  "never synced, client there",
			setup: func(f *fakeNomad, n *Nomad) { f.syncDelay, n.SyncTimeout = time.Hour, 300*time.Millisecond },
			want:  `waiting for the Nomad server to report slot blue on dev-1 (node f00dcafe): not reported within 300ms (the server has no value)`, step: StepSync,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, n := newFake(t)
			c.setup(f, n)
			err := n.SwitchDevice(context.Background(), fakeDev, "", "blue")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
			if got := errors.Is(err, scheduler.ErrDeviceOffline); got != c.offline {
				t.Fatalf("errors.Is(%v, ErrDeviceOffline) = %v, want %v", err, got, c.offline)
			}
			var se *SwitchError
			if !errors.As(err, &se) || se.Step != c.step || se.Device != fakeDev {
				t.Fatalf("error %#v, want a *SwitchError at step %d", err, c.step)
			}
		})
	}
}

func TestSwitchCancelled(t *testing.T) {
	f, n := newFake(t)
	f.syncDelay = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := n.SwitchDevice(ctx, fakeDev, "", "blue")
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, scheduler.ErrDeviceOffline) {
		t.Fatalf("error = %v, want the context's", err)
	}
}

func TestSwitchConcurrentSameDevice(t *testing.T) {
	f, n := newFake(t)
	f.syncDelay = 50 * time.Millisecond
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := n.SwitchDevice(context.Background(), fakeDev, "", "blue"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestPrepareCandidateGuards(t *testing.T) {
	_, n := newFake(t)
	cases := []struct {
		r    scheduler.Rollout
		want string
	}{
		{scheduler.Rollout{App: "other", ID: "r", Candidate: "blue"}, `is for application "other"`},
		{scheduler.Rollout{App: "edgeinfer", ID: "r", Version: "9.9.9", Candidate: "blue"}, `the rollout's version "9.9.9" is not the policy's "2.0.0"`},
		{scheduler.Rollout{App: "edgeinfer", ID: "r", Active: "blue", Candidate: "blue"}, "is the active slot"},
		{scheduler.Rollout{App: "edgeinfer", ID: "r", Candidate: "red"}, `slot "red" is neither`},
	}
	for _, c := range cases {
		if err := n.PrepareCandidate(context.Background(), &c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("PrepareCandidate(%+v) = %v, want %q", c.r, err, c.want)
		}
	}
}

func status(code int, body string) func(http.ResponseWriter, *api.NodeMetaApplyRequest) {
	return func(w http.ResponseWriter, _ *api.NodeMetaApplyRequest) { http.Error(w, body, code) }
}
