package controller

import (
	"testing"
	"time"
)

// clock is a fake monotonic clock for the reaper's observations.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }
func (c *clock) advance(d time.Duration) time.Time {
	c.t = c.t.Add(d)
	return c.t
}

const testTTL = 10 * time.Second

func TestReaperNoReapWhileTheHeartbeatMoves(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewReaper(testTTL, "own")
	idx := uint64(10)
	if r.Observe("leader", idx, c.now()) {
		t.Fatal("reaped a session seen for the first time")
	}
	// Two minutes of a heartbeat moving every 6 s, observed every 3 s
	// (a wait that timed out, then the move).
	for i := 0; i < 20; i++ {
		if r.Observe("leader", idx, c.advance(3*time.Second)) {
			t.Fatalf("reaped at step %d, 3 s after the last heartbeat", i)
		}
		idx++
		if r.Observe("leader", idx, c.advance(3*time.Second)) {
			t.Fatalf("reaped at step %d right after a heartbeat", i)
		}
	}
	if want := c.now().Add(testTTL + ReapMargin); !r.Deadline().Equal(want) {
		t.Fatalf("deadline %v, want TTL + margin after the last heartbeat (%v)", r.Deadline(), want)
	}
}

func TestReaperReapsAfterATTLOfSilence(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewReaper(testTTL, "own")
	r.Observe("leader", 7, c.now())
	r.Observe("leader", 8, c.advance(3*time.Second)) // the last heartbeat seen
	if got, want := r.Deadline(), c.now().Add(testTTL+ReapMargin); !got.Equal(want) {
		t.Fatalf("deadline %v, want %v (TTL + margin after the last move)", got, want)
	}
	if r.Observe("leader", 8, c.advance(testTTL/2)) {
		t.Fatal("reaped after TTL/2 of silence")
	}
	if r.Observe("leader", 8, c.advance(testTTL/2)) {
		t.Fatal("reaped after exactly one TTL of silence, before the margin")
	}
	if !r.Observe("leader", 8, c.advance(ReapMargin)) {
		t.Fatal("did not reap after TTL + margin of silence")
	}
}

func TestReaperRestartsTheTimerForANewLeader(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewReaper(testTTL, "own")
	r.Observe("old", 5, c.now())
	// The old leader was silent for most of a TTL when the key moves to a
	// new session (whose first heartbeat is not written yet).
	if r.Observe("old", 5, c.advance(testTTL-time.Second)) {
		t.Fatal("reaped before a TTL of silence")
	}
	if r.Observe("new", 5, c.advance(time.Second)) {
		t.Fatal("reaped a new leader at first sight")
	}
	if r.Observe("new", 5, c.advance(testTTL)) {
		t.Fatal("reaped the new leader one TTL after first seeing it, before the margin: its silence must count from when it was first seen")
	}
	if !r.Observe("new", 5, c.advance(ReapMargin)) {
		t.Fatal("did not reap a new leader that never wrote a heartbeat for TTL + margin")
	}
	// Free key, then a leader again: counted from scratch.
	r.Forget()
	if r.Observe("", 0, c.advance(time.Minute)) {
		t.Fatal("reaped a free key")
	}
	if !r.Deadline().IsZero() {
		t.Fatalf("a deadline without a leader: %v", r.Deadline())
	}
	if r.Observe("third", 9, c.advance(time.Second)) || r.Observe("third", 9, c.advance(testTTL)) {
		t.Fatal("reaped the third leader before TTL + margin from first sight")
	}
	if !r.Observe("third", 9, c.advance(ReapMargin)) {
		t.Fatal("did not reap the silent third leader")
	}
}

func TestReaperNeverReapsItsOwnSession(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewReaper(testTTL, "own")
	r.Observe("own", 3, c.now())
	for i := 0; i < 10; i++ {
		if r.Observe("own", 3, c.advance(testTTL)) {
			t.Fatalf("reaped its own session after %d TTLs of silence", i+1)
		}
	}
	if !r.Deadline().IsZero() {
		t.Fatalf("a deadline for its own session: %v", r.Deadline())
	}
}

func TestReaperAnyHeartbeatMoveIsLife(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	r := NewReaper(testTTL, "own")
	r.Observe("leader", 20, c.now())
	// A stale read showing an older index restarts the timer (the safe
	// way), it never brings the deadline closer.
	if r.Observe("leader", 19, c.advance(testTTL)) {
		t.Fatal("reaped on a changed (older) index")
	}
	if r.Observe("leader", 19, c.advance(testTTL)) {
		t.Fatal("reaped one TTL after the last change, before the margin")
	}
	if !r.Observe("leader", 19, c.advance(ReapMargin)) {
		t.Fatal("did not reap after TTL + margin")
	}
}
