package store

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeTxn is a Consul whose /v1/txn answers check-session operations from
// owners (key -> session), counting the requests and whether each asked
// for a consistent read.
type fakeTxn struct {
	owners     map[string]string
	calls      atomic.Int32
	consistent atomic.Int32
}

func (f *fakeTxn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/txn" {
		http.NotFound(w, r)
		return
	}
	f.calls.Add(1)
	if _, ok := r.URL.Query()["consistent"]; ok {
		f.consistent.Add(1)
	}
	body, _ := io.ReadAll(r.Body)
	var ops []struct {
		KV struct{ Verb, Key, Session string }
	}
	_ = json.Unmarshal(body, &ops)
	var errs []map[string]any
	for i, op := range ops {
		if op.KV.Verb != "check-session" || f.owners[op.KV.Key] != op.KV.Session {
			errs = append(errs, map[string]any{"OpIndex": i, "What": "failed session check for key \"" + op.KV.Key + "\""})
		}
	}
	w.Header().Set("Content-Type", "application/json")
	if len(errs) > 0 {
		w.WriteHeader(http.StatusConflict)
		_ = json.NewEncoder(w).Encode(map[string]any{"Errors": errs})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"Results": []any{}})
}

func fakeStore(t *testing.T, f http.Handler) *Consul {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	cfg := api.DefaultConfig()
	cfg.Address = strings.TrimPrefix(srv.URL, "http://")
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return New(client, Options{SessionTTL: 10 * time.Second})
}

// testLease is a lease of key by session sid renewed at renewedAt, with no
// goroutine behind it.
func testLease(c *Consul, key, sid string, renewedAt time.Time) *Lease {
	s := &Session{c: c, id: sid, ttl: c.ttl, log: c.logger, cancel: func() {}, lost: make(chan struct{}), renewedAt: renewedAt}
	return &Lease{c: c, s: s, key: key, cancel: func() {}, lost: make(chan struct{}), log: c.logger}
}

func TestFenceHeld(t *testing.T) {
	f := &fakeTxn{owners: map[string]string{"fleetplan/controller/leader": "s1", "fleetplan/rollouts/app/lock": "s1"}}
	c := fakeStore(t, f)
	leader := testLease(c, "fleetplan/controller/leader", "s1", time.Now())
	lock := &Lease{c: c, s: leader.s, key: "fleetplan/rollouts/app/lock", cancel: func() {}, lost: make(chan struct{}), log: c.logger}
	if err := c.Fence(leader, lock)(); err != nil {
		t.Fatalf("Fence while both keys are held: %v", err)
	}
	if f.calls.Load() != 1 || f.consistent.Load() != 1 {
		t.Errorf("Fence made %d requests (%d consistent), want one consistent read for both keys", f.calls.Load(), f.consistent.Load())
	}
}

// The key names another session: the fence fails and the lease is marked
// lost, so the controller's context ends too.
func TestFenceKeyOwnedByAnotherSession(t *testing.T) {
	f := &fakeTxn{owners: map[string]string{"fleetplan/controller/leader": "s1", "fleetplan/rollouts/app/lock": "s2"}}
	c := fakeStore(t, f)
	leader := testLease(c, "fleetplan/controller/leader", "s1", time.Now())
	lock := &Lease{c: c, s: leader.s, key: "fleetplan/rollouts/app/lock", cancel: func() {}, lost: make(chan struct{}), log: c.logger}
	err := c.Fence(leader, lock)()
	if !errors.Is(err, scheduler.ErrLockLost) || !strings.Contains(err.Error(), "fleetplan/rollouts/app/lock") {
		t.Fatalf("Fence with the rollout lock held by another session: %v, want ErrLockLost naming the key", err)
	}
	select {
	case <-lock.Lost():
	default:
		t.Error("the lease the fence found lost is not marked lost")
	}
	select {
	case <-leader.Lost():
		t.Error("the leader lease, still held, was marked lost")
	default:
	}
}

// No renewal within TTL minus the margin (a process stopped past its TTL):
// the fence fails locally, before any request, whatever Consul would say.
func TestFenceLocalLeaseExpired(t *testing.T) {
	f := &fakeTxn{owners: map[string]string{"k": "s1"}}
	c := fakeStore(t, f)
	ttl := c.ttl
	fresh := testLease(c, "k", "s1", time.Now().Add(-(ttl - LeaseMargin(ttl) - time.Second)))
	if err := c.Fence(fresh)(); err != nil {
		t.Fatalf("a lease renewed within TTL - margin: %v", err)
	}
	stale := testLease(c, "k", "s1", time.Now().Add(-(ttl - LeaseMargin(ttl) + 10*time.Millisecond)))
	calls := f.calls.Load()
	err := c.Fence(stale)()
	if !errors.Is(err, scheduler.ErrLockLost) || !strings.Contains(err.Error(), "local lease") {
		t.Fatalf("a lease past TTL - margin: %v, want ErrLockLost about the local lease", err)
	}
	if f.calls.Load() != calls {
		t.Error("the fence asked Consul although the local lease had expired")
	}
}

// A lost session or a released lease fails at once.
func TestFenceLostOrReleased(t *testing.T) {
	f := &fakeTxn{owners: map[string]string{"k": "s1"}}
	c := fakeStore(t, f)
	l := testLease(c, "k", "s1", time.Now())
	l.s.markLost("test")
	if err := c.Fence(l)(); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("Fence of a lost session: %v", err)
	}
	l2 := testLease(c, "k", "s1", time.Now())
	l2.markLost("test")
	if err := c.Fence(l2)(); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("Fence of a lost lease: %v", err)
	}
}

// Consul not answering is no evidence of holding the lock.
func TestFenceConsulUnreachable(t *testing.T) {
	c := fakeStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no leader", http.StatusInternalServerError)
	}))
	l := testLease(c, "k", "s1", time.Now())
	if err := c.Fence(l)(); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("Fence while Consul answers 500: %v, want ErrLockLost", err)
	}
}

// A fence read that fails once (a dropped connection under load, a Consul
// leader election) is read again while the lease holds: one bad answer is
// no verdict on the lock (fault suite, API faults: a reset connection
// stopped a controller that held its locks).
func TestFenceReadsAgainAfterAFailedRead(t *testing.T) {
	f := &fakeTxn{owners: map[string]string{"k": "s1"}}
	var failed atomic.Int32
	c := fakeStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failed.Add(1) <= 2 {
			http.Error(w, "rpc error: leader unavailable", http.StatusInternalServerError)
			return
		}
		f.ServeHTTP(w, r)
	}))
	l := testLease(c, "k", "s1", time.Now())
	if err := c.Fence(l)(); err != nil {
		t.Fatalf("Fence after two failed reads: %v, want held", err)
	}
	if got := failed.Load(); got != 3 {
		t.Errorf("Consul was asked %d times, want 3", got)
	}
}

// A lease that expires while the fence reads again ends the fence at once.
func TestFenceStopsReadingWhenTheLeaseExpires(t *testing.T) {
	var calls atomic.Int32
	c := fakeStore(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		http.Error(w, "no leader", http.StatusInternalServerError)
	}))
	// The local lease ends 300 ms from now, during the retries.
	lease := c.ttl - LeaseMargin(c.ttl)
	l := testLease(c, "k", "s1", time.Now().Add(-lease+300*time.Millisecond))
	err := c.Fence(l)()
	if !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("Fence: %v, want ErrLockLost", err)
	}
	if calls.Load() < 2 {
		t.Errorf("Consul was asked %d times, want the failed read read again", calls.Load())
	}
	if !strings.Contains(err.Error(), "past its local lease") {
		t.Errorf("Fence did not stop with the lease (read until its timeout?): %v", err)
	}
}

// fakeLockKV serves one key's GET with its owner session, refusing
// blocking queries (a lease must not hold a long-poll).
type fakeLockKV struct {
	mu       sync.Mutex
	key      string
	owner    string
	reads    int
	blocking int
}

func (f *fakeLockKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path != "/v1/kv/"+f.key {
		http.NotFound(w, r)
		return
	}
	f.reads++
	if r.URL.Query().Get("index") != "" {
		f.blocking++
	}
	w.Header().Set("X-Consul-Index", "7")
	if f.owner == "" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode([]map[string]any{{"Key": f.key, "Session": f.owner, "Value": nil, "ModifyIndex": 7}})
}

// A lease reads its key at the session's cadence, without a long-poll,
// and is lost once the key names another session.
func TestLeaseNoticesKeyTakenWithoutLongPoll(t *testing.T) {
	f := &fakeLockKV{key: "fleetplan/rollouts/app/lock", owner: "s1"}
	c := fakeStore(t, f)
	c.ttl = 3 * time.Second // reads every second
	l := testLease(c, f.key, "s1", time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { l.watch(ctx); close(done) }()

	// Held: reads happen, the lease stays.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := f.reads
		f.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lease read its key %d times in 10s, want 2", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-l.Lost():
		t.Fatal("the lease was marked lost while its key names its session")
	default:
	}

	f.mu.Lock()
	f.owner = "s2"
	f.mu.Unlock()
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease did not notice within 10s that its key names another session")
	}
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocking != 0 {
		t.Errorf("%d blocking queries on the lock key, want none", f.blocking)
	}
}
