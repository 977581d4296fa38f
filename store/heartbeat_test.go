package store

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeHeartbeats is a Consul whose /v1/txn applies check-session (from
// owners) and set operations, keeping the transactions it was sent.
type fakeHeartbeats struct {
	owners map[string]string
	mu     sync.Mutex
	txns   [][]txnOp
}

type txnOp struct {
	KV struct {
		Verb, Key, Session string
		Value              []byte
	}
}

func (f *fakeHeartbeats) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/txn" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var ops []txnOp
	_ = json.Unmarshal(body, &ops)
	f.mu.Lock()
	f.txns = append(f.txns, ops)
	owners := map[string]string{}
	for k, v := range f.owners {
		owners[k] = v
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	for i, op := range ops {
		if op.KV.Verb == "check-session" && owners[op.KV.Key] != op.KV.Session {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"Errors": []any{map[string]any{"OpIndex": i, "What": "failed session check"}}})
			return
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"Results": []any{}})
}

func (f *fakeHeartbeats) sent() [][]txnOp {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([][]txnOp(nil), f.txns...)
}

// The heartbeat is a set of the heartbeat key in one transaction with a
// check that the session still holds the leadership key.
func TestWriteHeartbeatIsBoundToTheLeadership(t *testing.T) {
	f := &fakeHeartbeats{owners: map[string]string{"fleetplan/controller/leader": "s1"}}
	c := fakeStore(t, f)
	leader := testLease(c, c.Layout().Leader(), "s1", time.Now())
	if err := c.WriteHeartbeat(context.Background(), leader, "ctl-a", 7); err != nil {
		t.Fatalf("a heartbeat while holding the leadership: %v", err)
	}
	txns := f.sent()
	if len(txns) != 1 || len(txns[0]) != 2 {
		t.Fatalf("sent %d transactions %+v, want one of two operations", len(txns), txns)
	}
	check, set := txns[0][0].KV, txns[0][1].KV
	if check.Verb != "check-session" || check.Key != "fleetplan/controller/leader" || check.Session != "s1" {
		t.Errorf("first operation %+v, want check-session of the leadership key by s1", check)
	}
	var v HeartbeatValue
	if err := json.Unmarshal(set.Value, &v); err != nil {
		t.Fatal(err)
	}
	if set.Verb != "set" || set.Key != "fleetplan/controller/heartbeat" || v != (HeartbeatValue{Session: "s1", Holder: "ctl-a", Seq: 7}) {
		t.Errorf("second operation %s %s %+v, want set of fleetplan/controller/heartbeat {s1 ctl-a 7}", set.Verb, set.Key, v)
	}

	f.mu.Lock()
	f.owners["fleetplan/controller/leader"] = "s2"
	f.mu.Unlock()
	if err := c.WriteHeartbeat(context.Background(), leader, "ctl-a", 8); !errors.Is(err, scheduler.ErrLockLost) {
		t.Errorf("a heartbeat after the leadership moved to another session: %v, want ErrLockLost", err)
	}
}

// Heartbeat writes at once, then after each renewal, and stops with the
// lease.
func TestHeartbeatAfterEachRenewal(t *testing.T) {
	f := &fakeHeartbeats{owners: map[string]string{"fleetplan/controller/leader": "s1"}}
	c := fakeStore(t, f)
	leader := testLease(c, c.Layout().Leader(), "s1", time.Now())
	leader.s.renewed = make(chan struct{}, 1)
	done := make(chan struct{})
	go func() { defer close(done); c.Heartbeat(context.Background(), leader, "ctl-a") }()

	waitWrites := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(f.sent()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d heartbeats written, want %d", len(f.sent()), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitWrites(1)
	leader.s.renewed <- struct{}{}
	waitWrites(2)
	txns := f.sent()
	for i, txn := range txns {
		var v HeartbeatValue
		_ = json.Unmarshal(txn[1].KV.Value, &v)
		if v.Seq != uint64(i+1) {
			t.Errorf("heartbeat %d has seq %d", i+1, v.Seq)
		}
	}
	leader.markLost("test")
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Heartbeat went on after the lease was lost")
	}
	if n := len(f.sent()); n != 2 {
		t.Errorf("%d heartbeats written, want 2 (no renewal since the second)", n)
	}
}
