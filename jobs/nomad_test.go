package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/hcl"
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
	// nodeStatusCode, when set and not 0, answers GET /v1/node/<id> with
	// that HTTP status (-1: closes the connection without an answer).
	nodeStatusCode func() int
	// applied is set by the first POST /v1/client/metadata.
	applied bool
	// allocsHangUp closes the connection of GET /v1/node/<id>/allocations.
	allocsHangUp bool
	// jobStatusCode, when not 0, answers every /v1/job/ request with it.
	jobStatusCode int
	// lists counts GET /v1/nodes.
	lists int
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err == nil {
		_ = conn.Close()
	}
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
	case r.URL.Path == "/v1/node/"+fakeNodeID && f.nodeStatusCode != nil && f.nodeStatusCode() != 0:
		if code := f.nodeStatusCode(); code < 0 {
			hangUp(w)
		} else {
			http.Error(w, "rpc error: leader changed", code)
		}
	case strings.HasPrefix(r.URL.Path, "/v1/job/") && f.jobStatusCode != 0:
		http.Error(w, "No cluster leader", f.jobStatusCode)
	case r.URL.Path == "/v1/node/"+fakeNodeID+"/allocations" && f.allocsHangUp:
		hangUp(w)
	case r.URL.Path == "/v1/nodes" && f.nodeStatusCode != nil && f.nodeStatusCode() != 0:
		if code := f.nodeStatusCode(); code < 0 {
			hangUp(w)
		} else {
			http.Error(w, "rpc error: leader changed", code)
		}
	case r.URL.Path == "/v1/nodes":
		f.lists++
		if !f.known {
			reply([]*api.NodeListStub{})
			return
		}
		reply([]*api.NodeListStub{{ID: fakeNodeID, Name: "dev-1", Status: f.status, ModifyIndex: f.index}})
	case r.URL.Path == "/v1/node/"+fakeNodeID:
		if !f.known {
			http.Error(w, "node not found", http.StatusNotFound)
			return
		}
		reply(&api.Node{ID: fakeNodeID, Name: "dev-1", Status: f.status, Meta: f.meta})
	case r.URL.Path == "/v1/client/metadata" && r.Method == http.MethodPost:
		var req api.NodeMetaApplyRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		f.applied = true
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
		// control: the error wraps scheduler.ErrControlPlane (I5).
		control bool
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
			name:    "server error",
			setup:   func(f *fakeNomad, _ *Nomad) { f.apply = status(http.StatusInternalServerError, "raft is sad") },
			control: true,
			want:    "setting slot metadata on dev-1 (node f00dcafe): control plane unavailable: Unexpected response code: 500 (raft is sad)", step: StepMetadata,
		},
		{
			name:    "rate limited",
			setup:   func(f *fakeNomad, _ *Nomad) { f.apply = status(http.StatusTooManyRequests, "slow down") },
			control: true,
			want:    "control plane unavailable: Unexpected response code: 429 (slow down)", step: StepMetadata,
		},
		{
			name: "connection closed mid-answer",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.apply = func(w http.ResponseWriter, _ *api.NodeMetaApplyRequest) { hangUp(w) }
			},
			control: true, want: "control plane unavailable", step: StepMetadata,
		},
		{
			name: "server errors while waiting for the sync",
			setup: func(f *fakeNomad, n *Nomad) {
				f.syncDelay, n.SyncTimeout = time.Hour, 600*time.Millisecond
				f.nodeStatusCode = func() int {
					if f.applied {
						return http.StatusInternalServerError
					}
					return 0
				}
			},
			control: true, want: "the server's last answer: control plane unavailable", step: StepSync,
		},
		{
			name:  "never synced, client there",
			setup: func(f *fakeNomad, n *Nomad) { f.syncDelay, n.SyncTimeout = time.Hour, 300*time.Millisecond },
			want:  `waiting for the Nomad server to report slot blue on dev-1 (node f00dcafe): not reported within 300ms (the server has no value)`, step: StepSync,
		},
		{
			name: "lookup: the server drops the connection",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.nodeStatusCode = func() int { return -1 }
			},
			control: true, want: "looking up dev-1 (node f00dcafe): control plane unavailable", step: StepLookup,
		},
		{
			name: "lookup: leader election",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.nodeStatusCode = func() int { return http.StatusInternalServerError }
			},
			control: true, want: "looking up dev-1 (node f00dcafe): control plane unavailable: Unexpected response code: 500", step: StepLookup,
		},
		{
			name: "stop: the server drops the connection",
			setup: func(f *fakeNomad, _ *Nomad) {
				f.allocs = []*api.Allocation{{ID: "x", JobID: "edgeinfer-green", DesiredStatus: "run", ClientStatus: "running"}}
				f.allocsHangUp = true
			},
			control: true, want: "control plane unavailable", step: StepStop,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, n := newFake(t)
			c.setup(f, n)
			err := n.SwitchDevice(context.Background(), fakeDev, "green", "blue")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
			if got := errors.Is(err, scheduler.ErrDeviceOffline); got != c.offline {
				t.Fatalf("errors.Is(%v, ErrDeviceOffline) = %v, want %v", err, got, c.offline)
			}
			if got := errors.Is(err, scheduler.ErrControlPlane); got != c.control {
				t.Fatalf("errors.Is(%v, ErrControlPlane) = %v, want %v", err, got, c.control)
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

func TestParseJobspecSizeLimit(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.nomad.hcl")
	if err := os.WriteFile(big, make([]byte, hcl.MaxJobspecSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	// The Nomad client points nowhere: the size check comes first.
	nc, err := api.NewClient(&api.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ParseJobspec(context.Background(), nc, big)
	if err == nil || !strings.Contains(err.Error(), "more than the limit of 1048576") || !strings.Contains(err.Error(), big) {
		t.Fatalf("want a size error naming the file, got %v", err)
	}
	if _, err := readJobspec(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing jobspec must fail")
	}
}

// TestControlPlaneErrorsOfJobs: a Nomad server that answers 5xx or is
// not there makes PrepareCandidate and RetireCandidate fail with
// scheduler.ErrControlPlane (I5), a 4xx does not.
func TestControlPlaneErrorsOfJobs(t *testing.T) {
	r := &scheduler.Rollout{App: "edgeinfer", ID: "r1", Version: "2.0.0", Active: "blue", Candidate: "green"}
	for _, code := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		f, n := newFake(t)
		f.jobStatusCode = code
		if err := n.PrepareCandidate(context.Background(), r); !errors.Is(err, scheduler.ErrControlPlane) {
			t.Errorf("PrepareCandidate with %d: %v, want ErrControlPlane", code, err)
		}
		if err := n.RetireCandidate(context.Background(), r); !errors.Is(err, scheduler.ErrControlPlane) {
			t.Errorf("RetireCandidate with %d: %v, want ErrControlPlane", code, err)
		}
	}
	f, n := newFake(t)
	f.jobStatusCode = http.StatusForbidden
	if err := n.RetireCandidate(context.Background(), r); err == nil || errors.Is(err, scheduler.ErrControlPlane) {
		t.Errorf("RetireCandidate with 403: %v, want an error that is not ErrControlPlane", err)
	}

	// Nobody listening: connection refused.
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	nc, err := api.NewClient(&api.Config{Address: addr})
	if err != nil {
		t.Fatal(err)
	}
	gone := NewNomad(nc, edgeinferPolicy(), edgeinferJob(), hclog.NewNullLogger())
	gone.CallTimeout = 300 * time.Millisecond
	if err := gone.PrepareCandidate(context.Background(), r); !errors.Is(err, scheduler.ErrControlPlane) {
		t.Errorf("PrepareCandidate, server gone: %v", err)
	}
	if err := gone.SwitchDevice(context.Background(), fakeDev, "blue", "green"); !errors.Is(err, scheduler.ErrControlPlane) || errors.Is(err, scheduler.ErrDeviceOffline) {
		t.Errorf("SwitchDevice, server gone: %v", err)
	}
	// A cancelled caller gets its own error, not a control-plane one.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := gone.SwitchDevice(ctx, fakeDev, "blue", "green"); errors.Is(err, scheduler.ErrControlPlane) || !errors.Is(err, context.Canceled) {
		t.Errorf("SwitchDevice, cancelled: %v", err)
	}
}
