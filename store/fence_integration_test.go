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
// acting, that its key was taken away: the blocking query on the key.
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
