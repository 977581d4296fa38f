//go:build integration

package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

func fenceStore(tb testing.TB) (*Consul, *api.Client) {
	tb.Helper()
	cl := testcluster.Require(tb)
	prefix := fmt.Sprintf("fleetplan-test/fence-%s-%d/", strings.ReplaceAll(tb.Name(), "/", "_"), time.Now().UnixNano())
	tb.Cleanup(func() { _, _ = cl.Consul.KV().DeleteTree(prefix, nil) })
	return New(cl.Consul, Options{Prefix: prefix, SessionTTL: 10 * time.Second, LockDelay: time.Second}), cl.Consul
}

// TestIntegrationLeaderAndRolloutLocksOnOneSession: the leader's session
// holds the leadership and a rollout's lock; the fence passes while both
// are held, fails once the rollout lock is taken over by another session,
// and a destroyed session fails every fence and closes every lost channel.
// It logs how long after the loss the lost channel closed (lock loss to
// stop).
func TestIntegrationLeaderAndRolloutLocksOnOneSession(t *testing.T) {
	s, cc := fenceStore(t)
	ctx := context.Background()
	sess, err := s.NewSession(ctx, "test leader")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	leader, err := s.AcquireLeader(ctx, sess, "leader-1", false)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.NewSession(ctx, "test standby")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy()
	if _, err := s.AcquireLeader(ctx, other, "leader-2", false); err == nil {
		t.Fatal("a second session acquired the held leadership")
	} else if held, ok := IsLockHeld(err); !ok || held.Holder != "leader-1" {
		t.Fatalf("the second leader's error: %v", err)
	}
	lock, err := s.AcquireRollout(ctx, sess, "app", "leader-1", false)
	if err != nil {
		t.Fatal(err)
	}
	fence := s.Fence(leader, lock)
	if err := fence(); err != nil {
		t.Fatalf("fence while both are held: %v", err)
	}
	// State writes are bound to the session.
	r := testRun("app")
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatalf("SaveRollout under the lock: %v", err)
	}

	// The session is destroyed behind the leader's back (as Consul does
	// when its TTL runs out).
	lostAt := time.Now()
	if _, err := cc.Session().Destroy(sess.ID(), nil); err != nil {
		t.Fatal(err)
	}
	if err := fence(); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("fence after the session was destroyed: %v, want ErrLockLost", err)
	}
	select {
	case <-lock.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("the rollout lease was not marked lost within 5s")
	}
	t.Logf("measured: session destroyed -> lost channel closed (with a fence in between): %s", time.Since(lostAt).Round(time.Millisecond))
	if err := s.SaveRollout(ctx, r); !errors.Is(err, scheduler.ErrLockLost) {
		t.Errorf("SaveRollout after the loss: %v, want ErrLockLost", err)
	}
}

// TestIntegrationLockLossNoticed measures how fast a holder notices, without
// acting, that its key was taken away: its session renewal or its read
// of the key, every TTL/3.
func TestIntegrationLockLossNoticed(t *testing.T) {
	s, cc := fenceStore(t)
	ctx := context.Background()
	sess, err := s.NewSession(ctx, "test")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	lock, err := s.AcquireRollout(ctx, sess, "app", "holder", false)
	if err != nil {
		t.Fatal(err)
	}
	lostAt := time.Now()
	if _, err := cc.Session().Destroy(sess.ID(), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lock.Lost():
		t.Logf("measured: session destroyed -> lost channel closed (no fence): %s", time.Since(lostAt).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("the loss was not noticed within 10s")
	}
}

// BenchmarkFence is the cost of the fence made before every cluster action
// and state write: the local lease and one consistent read of two keys.
func BenchmarkFence(b *testing.B) {
	s, _ := fenceStore(b)
	ctx := context.Background()
	sess, err := s.NewSession(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	leader, err := s.AcquireLeader(ctx, sess, "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	lock, err := s.AcquireRollout(ctx, sess, "app", "bench", false)
	if err != nil {
		b.Fatal(err)
	}
	fence := s.Fence(leader, lock)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := fence(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIntegrationLeaderHeartbeat: the leader's heartbeat is written at once
// and moves after a renewal of its session; a standby sees both keys in one
// read; once the session is destroyed (as a standby reaping a silent leader
// does) the leadership key is free and the heartbeat can no longer be
// written.
func TestIntegrationLeaderHeartbeat(t *testing.T) {
	s, _ := fenceStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sess, err := s.NewSession(ctx, "test leader")
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	leader, err := s.AcquireLeader(ctx, sess, "leader-1", false)
	if err != nil {
		t.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Heartbeat(hctx, leader, "leader-1") }()
	defer func() { stop(); <-done }()

	// The first heartbeat, then one after a renewal (every TTL/3).
	var v LeadershipView
	var index uint64
	next := func() {
		t.Helper()
		var err error
		if v, index, err = s.WatchLeadership(ctx, index, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for v.HeartbeatIndex == 0 {
		next()
	}
	first := v.HeartbeatIndex
	started := time.Now()
	for v.HeartbeatIndex == first {
		next()
	}
	t.Logf("measured: the second heartbeat %s after the first (renewals every TTL/3)", time.Since(started).Round(time.Millisecond))
	if v.Session != sess.ID() || v.Holder != "leader-1" {
		t.Errorf("the leadership seen: %+v, want session %s held by leader-1", v, sess.ID())
	}
	if v.Heartbeat.Session != sess.ID() || v.Heartbeat.Holder != "leader-1" || v.Heartbeat.Seq < 2 {
		t.Errorf("the heartbeat's value: %+v, want session %s, leader-1, seq >= 2", v.Heartbeat, sess.ID())
	}

	other, err := s.NewSession(ctx, "test standby")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy()
	if err := s.DestroySession(ctx, sess.ID()); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteHeartbeat(ctx, leader, "leader-1", 99); !errors.Is(err, scheduler.ErrLockLost) {
		t.Errorf("a heartbeat after the session was destroyed: %v, want ErrLockLost", err)
	}
	v, _, err = s.WatchLeadership(ctx, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if v.Session != "" || v.Heartbeat.Seq == 99 {
		t.Errorf("after the session was destroyed: %+v, want a free key and no heartbeat 99", v)
	}
	// After the lock delay, the standby's session takes the leadership.
	if _, err := s.AcquireLeader(ctx, other, "leader-2", true); err != nil {
		t.Fatalf("the standby acquiring the reaped leadership: %v", err)
	}
}
