package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/store"
)

// ReapMargin is how much longer than a whole TTL a standby waits, on its
// own clock, after it last saw the leader's heartbeat move before it
// destroys the leader's session.
const ReapMargin = 500 * time.Millisecond

// Reaper decides, from a standby's observations of the leadership key and
// the leader's heartbeat, when the leader has gone silent: its heartbeat
// (written after each renewal of its session) has not moved for a whole
// TTL plus ReapMargin, counted on the standby's monotonic clock from the
// moment the standby saw it move last, or first saw the session.
//
// Why that is safe: the leader's local lease fails its fence TTL minus a
// margin after its last successful renewal was sent; each heartbeat is
// written after a renewal and seen by the standby later still, so when the
// standby reaps, the leader's lease has already run out. No clock is
// compared across hosts. Reaper is not safe for concurrent use.
type Reaper struct {
	ttl time.Duration
	own string // this instance's session: never reaped

	session string    // the leader session followed ("" none)
	index   uint64    // its heartbeat's last ModifyIndex seen
	since   time.Time // when index was last seen to move (or session first seen)
}

// NewReaper returns a reaper for sessions of TTL ttl, never reaping own.
func NewReaper(ttl time.Duration, own string) *Reaper {
	return &Reaper{ttl: ttl, own: own}
}

// Silence is how long a leader's heartbeat must stay still before it is
// reaped: TTL plus ReapMargin.
func (r *Reaper) Silence() time.Duration { return r.ttl + ReapMargin }

// Observe takes one successful read, at now (on this process's monotonic
// clock), of the leadership key (held by session, "" when free) and of the
// heartbeat key (its ModifyIndex, 0 when absent). It returns true when the
// session is to be destroyed: a session other than this instance's own
// whose heartbeat has not moved for Silence. Only successful reads are
// observations: a read that failed says nothing either way.
func (r *Reaper) Observe(session string, heartbeatIndex uint64, now time.Time) bool {
	switch {
	case session == "":
		r.session, r.index, r.since = "", 0, time.Time{}
		return false
	case session != r.session:
		// A new leader: its silence is counted from now.
		r.session, r.index, r.since = session, heartbeatIndex, now
		return false
	case heartbeatIndex != r.index:
		// Any move is a sign of life (only the session holding the
		// leadership key can write the heartbeat; an older index from a
		// stale read only restarts the timer, the safe way).
		r.index, r.since = heartbeatIndex, now
		return false
	}
	return session != r.own && now.Sub(r.since) >= r.Silence()
}

// Deadline is when the followed session becomes reapable if its heartbeat
// does not move (zero when no session is followed or it is this
// instance's own).
func (r *Reaper) Deadline() time.Time {
	if r.session == "" || r.session == r.own {
		return time.Time{}
	}
	return r.since.Add(r.Silence())
}

// Forget restarts the count for the followed session (after destroying
// it, or failing to).
func (r *Reaper) Forget() { r.session, r.index, r.since = "", 0, time.Time{} }

// watchLeader runs while this instance stands by with the session sess: it
// follows the leadership key and the leader's heartbeat with blocking
// queries, keeps the leader's name for /v1/health, and destroys the
// session of a leader whose heartbeat stayed still for a whole TTL (see
// Reaper), so that a standby takes over within about TTL plus the lock
// delay rather than Consul's 1 to 2 TTLs.
func (s *Service) watchLeader(ctx context.Context, sess *store.Session) {
	r := NewReaper(sess.TTL(), sess.ID())
	log := s.log.Named("reaper")
	var index uint64
	failures := 0
	for ctx.Err() == nil {
		// Wake up at the followed session's deadline at the latest, and
		// at least every TTL/2.
		wait := sess.TTL() / 2
		if d := r.Deadline(); !d.IsZero() {
			wait = min(wait, max(time.Until(d), 50*time.Millisecond))
		}
		v, next, err := s.st.WatchLeadership(ctx, index, wait)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			s.m.APIError("consul")
			retry := blocking.Backoff(failures, 250*time.Millisecond, 5*time.Second)
			log.Debug("watching the leadership", "error", err, "retry_in", retry)
			if blocking.Sleep(ctx, retry) != nil {
				return
			}
			continue
		}
		failures = 0
		if next < index {
			next = 0
		}
		index = next
		s.mu.Lock()
		if s.role != RoleLeader {
			s.leader = v.Holder
		}
		s.mu.Unlock()
		if !r.Observe(v.Session, v.HeartbeatIndex, time.Now()) {
			continue
		}
		silent := time.Since(r.since).Round(time.Millisecond)
		r.Forget()
		if err := s.reap(ctx, v, silent); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.m.APIError("consul")
			log.Warn("could not destroy the silent leader's session; trying again", "leader", v.Holder, "session", v.Session, "error", err)
			if blocking.Sleep(ctx, time.Second) != nil {
				return
			}
		}
	}
}

// reap destroys the session of the silent leader v and records it (log,
// audit trail, metrics).
func (s *Service) reap(ctx context.Context, v store.LeadershipView, silent time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.st.DestroySession(dctx, v.Session); err != nil {
		return err
	}
	s.m.SessionReaped()
	msg := fmt.Sprintf("the leader %s has not renewed for %s; destroyed its session %s", v.Holder, silent, v.Session)
	s.log.Warn(msg, "leader", v.Holder, "session", v.Session, "silent", silent)
	sink, err := s.op.AuditSink("", s.cfg.Name)
	if err != nil {
		s.log.Error("could not open the audit trail to record the destroyed session", "error", err)
		return nil
	}
	defer sink.Close()
	sink.Record(ctx, operator.Note("", "", "controller-reap", "destroyed", msg, s.cfg.Name))
	return nil
}
