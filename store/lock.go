package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// LockHeldError is returned by Lock when another controller holds the lock
// of a rollout.
type LockHeldError struct {
	// App is the rollout ("" for another lock, named by Key).
	App string
	Key string
	// Holder names the holder (user@host pid N) and Since says when it took
	// the lock.
	Holder string
	Since  time.Time
	// Session is the holder's Consul session.
	Session string
}

func (e *LockHeldError) Error() string {
	holder := e.Holder
	if holder == "" {
		holder = "an unnamed holder"
	}
	msg := fmt.Sprintf("rollout %s is locked by another controller, %s", e.App, holder)
	if e.App == "" {
		msg = fmt.Sprintf("%s is held by %s", e.Key, holder)
	}
	if !e.Since.IsZero() {
		msg += " since " + e.Since.Local().Format(time.RFC3339)
	}
	if e.Session != "" {
		msg += " (Consul session " + e.Session + ")"
	}
	return msg
}

// lockValue is the value of the lock key.
type lockValue struct {
	Holder  string    `json:"holder"`
	Since   time.Time `json:"since"`
	Session string    `json:"session,omitempty"`
}

// A lock is a key acquired by a Consul session (behavior "release", a
// short lock delay). A Session is renewed in the background; a Lease is one
// key it holds. One session may hold several keys: the controller service's
// leader holds the leadership key and the lock of every rollout it runs with
// one session, so that they are lost together.
//
// Losing a lock is noticed three ways: the lease's lost channel (a blocking
// query on the key, the renewals), the session's local lease (no renewal
// succeeded within TTL minus a margin: a process frozen past its TTL fails it
// the moment it runs again, before its renewer does) and Fence, a consistent
// read of the keys made before each action.

// Session is a Consul session this process keeps alive.
type Session struct {
	c      *Consul
	id     string
	ttl    time.Duration
	log    hclog.Logger
	cancel context.CancelFunc

	lost     chan struct{}
	lostOnce sync.Once
	destroy  sync.Once
	// renewed receives (without blocking the renewer) after each
	// successful renewal.
	renewed chan struct{}

	mu sync.Mutex
	// renewedAt is when the last successful renewal (or the creation) was
	// sent; Consul restarts the TTL no earlier than that. It carries Go's
	// monotonic clock, which keeps running while the process is stopped.
	renewedAt time.Time
}

// NewSession creates a session (TTL Options.SessionTTL, lock delay
// Options.LockDelay, behavior "release") and renews it every TTL/3 until
// Destroy or its loss.
func (c *Consul) NewSession(ctx context.Context, name string) (*Session, error) {
	sent := time.Now()
	sid, _, err := c.client.Session().Create(&api.SessionEntry{
		Name:      name,
		TTL:       c.ttl.String(),
		Behavior:  api.SessionBehaviorRelease,
		LockDelay: c.lockDelay,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("creating the Consul session %q: %w", name, err)
	}
	kctx, cancel := context.WithCancel(context.Background())
	s := &Session{c: c, id: sid, ttl: c.ttl, log: c.logger.With("session", sid), cancel: cancel, lost: make(chan struct{}), renewed: make(chan struct{}, 1), renewedAt: sent}
	go s.renew(kctx)
	return s, nil
}

// ID is the Consul session ID.
func (s *Session) ID() string { return s.id }

// TTL is the session's TTL.
func (s *Session) TTL() time.Duration { return s.ttl }

// Lost is closed when the session is lost (expired, destroyed, or not
// renewed for a whole TTL) and on Destroy.
func (s *Session) Lost() <-chan struct{} { return s.lost }

// Renewed receives after each successful renewal (a renewal that comes
// while the previous one was not received yet is merged with it).
func (s *Session) Renewed() <-chan struct{} { return s.renewed }

// LeaseMargin is how long before the end of its TTL (counted from the last
// renewal sent) the local lease of a session ends.
func LeaseMargin(ttl time.Duration) time.Duration { return max(ttl/5, time.Second) }

// Held is the local half of the fence: an error when the session is known
// lost, or when no renewal succeeded within TTL minus LeaseMargin (Consul
// may have invalidated it; a process that was stopped past its TTL fails
// here before it can act). It wraps scheduler.ErrLockLost.
func (s *Session) Held() error {
	select {
	case <-s.lost:
		return fmt.Errorf("%w: the Consul session %s is gone", scheduler.ErrLockLost, s.id)
	default:
	}
	s.mu.Lock()
	at := s.renewedAt
	s.mu.Unlock()
	lease := s.ttl - LeaseMargin(s.ttl)
	if age := time.Since(at); age > lease {
		return fmt.Errorf("%w: the Consul session %s was last renewed %s ago, past its local lease of %s (TTL %s): it may have expired",
			scheduler.ErrLockLost, s.id, age.Round(time.Millisecond), lease, s.ttl)
	}
	return nil
}

func (s *Session) markLost(why string) {
	s.lostOnce.Do(func() {
		s.log.Warn("Consul session lost", "reason", why)
		close(s.lost)
	})
}

// Destroy stops the renewals and destroys the session (Consul then releases
// every key it still holds, after the lock delay: release them first). It
// is idempotent and never blocks for more than a few seconds.
func (s *Session) Destroy() {
	s.destroy.Do(func() {
		s.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.c.client.Session().Destroy(s.id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			s.log.Debug("destroying the session", "error", err)
		}
		s.lostOnce.Do(func() { close(s.lost) })
	})
}

// renew renews the session every TTL/3. The session counts as lost when
// Consul no longer knows it, or when no renewal succeeded for a whole TTL.
func (s *Session) renew(ctx context.Context) {
	ttl := s.ttl
	wait := ttl / 3
	lastOK := time.Now()
	for {
		if err := blocking.Sleep(ctx, wait); err != nil {
			return
		}
		sent := time.Now()
		entry, _, err := s.c.client.Session().Renew(s.id, (&api.WriteOptions{}).WithContext(ctx))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if time.Since(lastOK) > ttl {
				s.markLost(fmt.Sprintf("could not renew the session for %s: %v", ttl, err))
				return
			}
			s.log.Debug("renewing the session", "error", err)
			wait = min(time.Second, ttl/4)
		case entry == nil:
			s.markLost("the session expired or was destroyed")
			return
		default:
			lastOK = sent
			s.mu.Lock()
			s.renewedAt = sent
			s.mu.Unlock()
			select {
			case s.renewed <- struct{}{}:
			default:
			}
			wait = ttl / 3
		}
	}
}

// Lease is a key held by a session.
type Lease struct {
	c        *Consul
	s        *Session
	key, app string
	cancel   context.CancelFunc
	lost     chan struct{}
	lostOnce sync.Once
	relOnce  sync.Once
	log      hclog.Logger
}

// Key is the lock key.
func (l *Lease) Key() string { return l.key }

// Session is the session holding the key.
func (l *Lease) Session() *Session { return l.s }

// Lost is closed when the key is lost (its session is lost, the key no
// longer names it) and on Release.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// Held is the local check of the lease: its session's local lease, and the
// key not known lost. It wraps scheduler.ErrLockLost.
func (l *Lease) Held() error {
	select {
	case <-l.lost:
		return fmt.Errorf("%w: %s is no longer held by session %s", scheduler.ErrLockLost, l.key, l.s.id)
	default:
	}
	return l.s.Held()
}

func (l *Lease) markLost(why string) {
	// The store stays bound to the lost session until release: every
	// write of the rollout's state fails from now on.
	l.lostOnce.Do(func() {
		l.log.Warn("lock lost", "reason", why)
		close(l.lost)
	})
}

// Release gives the key back (no lock delay for the next holder) and closes
// lost; the session lives on. It is idempotent and never blocks for more
// than a few seconds.
func (l *Lease) Release() {
	l.relOnce.Do(func() {
		if l.app != "" {
			l.c.sessions.CompareAndDelete(l.app, l.s.id)
		}
		l.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, _, err := l.c.kv.Release(&api.KVPair{Key: l.key, Session: l.s.id}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			l.log.Debug("releasing the lock key", "error", err)
		}
		l.lostOnce.Do(func() { close(l.lost) })
	})
}

// Lock takes the controller lock of a rollout: a Consul session with a TTL
// (renewed in the background, behavior "release", a short lock delay) that
// acquires .../rollouts/<app>/lock, whose value names the holder. When
// another session holds it, Lock returns a *LockHeldError at once.
//
// ctx bounds the acquisition only; the lock is held until release is
// called or it is lost. lost is closed when the lock is lost (the session
// expired or was destroyed, the key was taken away) and also on release.
// When a holder dies without releasing (SIGKILL), Consul frees the lock once
// the session's TTL runs out (up to twice SessionTTL) plus LockDelay.
func (c *Consul) Lock(ctx context.Context, app, holder string) (lost <-chan struct{}, release func(), err error) {
	l, err := c.LockLease(ctx, app, holder, false)
	if err != nil {
		return nil, nil, err
	}
	return l.Lost(), l.releaseAll, nil
}

// LockWait is Lock that waits, with a blocking query on the lock key, until
// the lock is free or ctx ends. When ctx ends first the error wraps both
// ctx.Err() and the last *LockHeldError.
func (c *Consul) LockWait(ctx context.Context, app, holder string) (lost <-chan struct{}, release func(), err error) {
	l, err := c.LockLease(ctx, app, holder, true)
	if err != nil {
		return nil, nil, err
	}
	return l.Lost(), l.releaseAll, nil
}

// LockLease is Lock (LockWait with wait) returning the lease, on a session
// of its own: release it with ReleaseAll, which destroys the session too.
func (c *Consul) LockLease(ctx context.Context, app, holder string, wait bool) (*Lease, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	if holder == "" {
		holder = DefaultHolder()
	}
	s, err := c.NewSession(ctx, "fleetplan controller "+app+" ("+holder+")")
	if err != nil {
		return nil, fmt.Errorf("taking the lock of %s: %w", app, err)
	}
	l, err := c.AcquireRollout(ctx, s, app, holder, wait)
	if err != nil {
		s.Destroy()
		return nil, err
	}
	return l, nil
}

// ReleaseAll releases the key and destroys its session (for a lease made
// by LockLease, whose session holds nothing else).
func (l *Lease) ReleaseAll() { l.releaseAll() }

func (l *Lease) releaseAll() {
	l.Release()
	l.s.Destroy()
}

// AcquireRollout acquires the lock of a rollout with the session s (see
// Acquire); from then on this process's writes of the rollout's state are
// bound to the session (I8).
func (c *Consul) AcquireRollout(ctx context.Context, s *Session, app, holder string, wait bool) (*Lease, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	return c.acquire(ctx, s, c.lockKey(app), app, holder, wait)
}

// Acquire acquires key with the session s, its value naming holder. When
// another session holds it, Acquire returns a *LockHeldError at once, or
// with wait, follows the key with a blocking query until it is free or ctx
// ends (the error then wraps both ctx.Err() and the last *LockHeldError).
func (c *Consul) Acquire(ctx context.Context, s *Session, key, holder string, wait bool) (*Lease, error) {
	return c.acquire(ctx, s, key, "", holder, wait)
}

func (c *Consul) acquire(ctx context.Context, s *Session, key, app, holder string, wait bool) (*Lease, error) {
	if holder == "" {
		holder = DefaultHolder()
	}
	log := c.logger.With("key", key, "session", s.id)
	value, _ := json.Marshal(lockValue{Holder: holder, Since: c.now().UTC(), Session: s.id})
	var held *LockHeldError
	freeSince := time.Time{}
	for {
		ok, pair, err := c.tryAcquire(ctx, key, s.id, value)
		if err != nil {
			if ctx.Err() != nil && held != nil {
				return nil, fmt.Errorf("%w: %w", ctx.Err(), held)
			}
			return nil, err
		}
		if ok {
			log.Debug("lock acquired", "holder", holder)
			kctx, cancel := context.WithCancel(context.Background())
			l := &Lease{c: c, s: s, key: key, app: app, cancel: cancel, lost: make(chan struct{}), log: log}
			if app != "" {
				c.sessions.Store(app, s.id)
			}
			go l.watch(kctx)
			return l, nil
		}
		select {
		case <-s.lost:
			return nil, fmt.Errorf("the Consul session for the lock %s was lost while waiting", key)
		default:
		}
		var waitIndex uint64
		if pair != nil && pair.Session != "" {
			held = &LockHeldError{App: app, Key: key, Session: pair.Session}
			var v lockValue
			if json.Unmarshal(pair.Value, &v) == nil {
				held.Holder, held.Since = v.Holder, v.Since
			}
			if !wait {
				return nil, held
			}
			waitIndex = pair.ModifyIndex
		}
		if waitIndex == 0 {
			// The key is free but Consul's lock delay after the previous
			// holder's session ended still runs: try again shortly.
			if freeSince.IsZero() {
				freeSince = time.Now()
			} else if !wait && time.Since(freeSince) > 3*c.lockDelay+2*time.Second {
				return nil, fmt.Errorf("could not acquire the free lock %s for %s", key, time.Since(freeSince).Round(time.Second))
			}
			if err := blocking.Sleep(ctx, c.lockDelay/4+50*time.Millisecond); err != nil {
				if held != nil {
					return nil, fmt.Errorf("%w: %w", err, held)
				}
				return nil, err
			}
			continue
		}
		log.Debug("waiting for the lock", "holder", held.Holder)
		if _, _, err := c.kv.Get(key, (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: time.Minute}).WithContext(ctx)); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w: %w", ctx.Err(), held)
			}
			return nil, fmt.Errorf("waiting for the lock %s: %w", key, err)
		}
	}
}

// tryAcquire tries to acquire the key once. When it is not acquired it
// returns the key as it is now (nil when absent).
func (c *Consul) tryAcquire(ctx context.Context, key, sid string, value []byte) (bool, *api.KVPair, error) {
	ok, _, err := c.kv.Acquire(&api.KVPair{Key: key, Value: value, Session: sid}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return false, nil, fmt.Errorf("acquiring %s: %w", key, err)
	}
	if ok {
		return true, nil, nil
	}
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return false, nil, fmt.Errorf("reading %s: %w", key, err)
	}
	if pair != nil && pair.Session == sid {
		return true, nil, nil
	}
	return false, pair, nil
}

// leaseCheckInterval is how often a lease reads its key: the session's
// renewal cadence (TTL/3), at least a second.
func leaseCheckInterval(ttl time.Duration) time.Duration { return max(ttl/3, time.Second) }

// watch reports the loss of the lease: at once when its session is lost
// (its renewal, every TTL/3, finds it expired or destroyed), and when a
// read of the key, made at the same cadence, finds it no longer names the
// session (an operator deleted it, another session took it). A read, not
// a long-poll: a controller keeps at most the health watcher's long-polls
// and the operators' controls open during a soak, whatever the number of
// its locks. A failed read is no evidence either way; the fence made
// before every action and state write is the authority.
func (l *Lease) watch(ctx context.Context) {
	t := time.NewTicker(leaseCheckInterval(l.s.ttl))
	defer t.Stop()
	for {
		select {
		case <-l.s.lost:
			l.markLost("the session holding it was lost")
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pair, _, err := l.c.kv.Get(l.key, (&api.QueryOptions{}).WithContext(ctx))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			l.log.Debug("reading the lock key", "key", l.key, "error", err)
		case pair == nil || pair.Session != l.s.id:
			l.markLost("the lock key no longer belongs to this session")
			return
		}
	}
}

// FenceTimeout bounds the consistent read of a fence.
const FenceTimeout = 5 * time.Second

// Fence returns the synchronous check a controller makes before every
// cluster action and state write: every lease's local check (Held), then
// one consistent read (a read-only transaction of check-session operations,
// served by the Consul leader) that every key still names its session.
// Errors wrap scheduler.ErrLockLost; a read that fails is no evidence of
// holding the lock and fails too. A lease found lost is marked so.
func (c *Consul) Fence(leases ...*Lease) func() error {
	return func() error {
		ops := make(api.TxnOps, 0, len(leases))
		for _, l := range leases {
			if err := l.Held(); err != nil {
				return err
			}
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: l.key, Session: l.s.id}})
		}
		if len(ops) == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), FenceTimeout)
		defer cancel()
		// A read that fails (a dropped connection, a Consul leader
		// election) is read again, briefly and only while every local
		// lease still holds; one that keeps failing is no evidence and
		// fails the fence.
		var (
			ok   bool
			resp *api.TxnResponse
			err  error
		)
		for attempt := 1; ; attempt++ {
			ok, resp, _, err = c.client.Txn().Txn(ops, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
			if err == nil {
				break
			}
			for _, l := range leases {
				if herr := l.Held(); herr != nil {
					return herr
				}
			}
			if blocking.Sleep(ctx, blocking.Backoff(attempt, 50*time.Millisecond, time.Second)) != nil {
				return fmt.Errorf("%w: could not verify with Consul that this controller still holds its locks (%d reads in %s): %v", scheduler.ErrLockLost, attempt, FenceTimeout, err)
			}
		}
		if !ok {
			var lostKeys []string
			for _, e := range resp.Errors {
				if e.OpIndex >= 0 && e.OpIndex < len(leases) {
					leases[e.OpIndex].markLost("a fence found the key held by another session or by none")
					lostKeys = append(lostKeys, leases[e.OpIndex].key)
				}
			}
			return fmt.Errorf("%w: Consul says this controller's session no longer holds %v", scheduler.ErrLockLost, lostKeys)
		}
		// The read took time: the local lease must still hold after it.
		for _, l := range leases {
			if err := l.Held(); err != nil {
				return err
			}
		}
		return nil
	}
}

// IsLockHeld reports whether err says that another controller holds a lock,
// and returns its description.
func IsLockHeld(err error) (*LockHeldError, bool) {
	var held *LockHeldError
	ok := errors.As(err, &held)
	return held, ok
}
