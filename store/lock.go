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
)

// LockHeldError is returned by Lock when another controller holds the lock
// of a rollout.
type LockHeldError struct {
	App string
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
	return c.lock(ctx, app, holder, false)
}

// LockWait is Lock that waits, with a blocking query on the lock key, until
// the lock is free or ctx ends. When ctx ends first the error wraps both
// ctx.Err() and the last *LockHeldError.
func (c *Consul) LockWait(ctx context.Context, app, holder string) (lost <-chan struct{}, release func(), err error) {
	return c.lock(ctx, app, holder, true)
}

func (c *Consul) lock(ctx context.Context, app, holder string, wait bool) (<-chan struct{}, func(), error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, nil, err
	}
	if holder == "" {
		holder = DefaultHolder()
	}
	key := c.lockKey(app)
	log := c.logger.With("rollout", app)

	sid, _, err := c.client.Session().Create(&api.SessionEntry{
		Name:      "fleetplan controller " + app + " (" + holder + ")",
		TTL:       c.ttl.String(),
		Behavior:  api.SessionBehaviorRelease,
		LockDelay: c.lockDelay,
	}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, nil, fmt.Errorf("creating a Consul session for the lock of %s: %w", app, err)
	}

	// The keeper renews the session from now on (LockWait may wait long)
	// and, once the lock is held, watches the key.
	kctx, cancel := context.WithCancel(context.Background())
	k := &lockKeeper{c: c, app: app, key: key, sid: sid, cancel: cancel, lost: make(chan struct{}), log: log.With("session", sid)}
	go k.renew(kctx)

	value, _ := json.Marshal(lockValue{Holder: holder, Since: c.now().UTC(), Session: sid})
	var held *LockHeldError
	freeSince := time.Time{}
	for {
		ok, pair, err := c.tryAcquire(ctx, key, sid, value)
		if err != nil {
			k.release()
			if ctx.Err() != nil && held != nil {
				return nil, nil, fmt.Errorf("%w: %w", ctx.Err(), held)
			}
			return nil, nil, err
		}
		if ok {
			log.Debug("lock acquired", "holder", holder)
			// From now on this process's writes of the rollout's state
			// are bound to the session (I8).
			c.sessions.Store(app, sid)
			go k.watch(kctx)
			return k.lost, k.release, nil
		}
		select {
		case <-k.lost:
			k.release()
			return nil, nil, fmt.Errorf("the Consul session for the lock of %s expired while waiting", app)
		default:
		}
		var waitIndex uint64
		if pair != nil && pair.Session != "" {
			held = &LockHeldError{App: app, Session: pair.Session}
			var v lockValue
			if json.Unmarshal(pair.Value, &v) == nil {
				held.Holder, held.Since = v.Holder, v.Since
			}
			if !wait {
				k.release()
				return nil, nil, held
			}
			waitIndex = pair.ModifyIndex
		}
		if waitIndex == 0 {
			// The key is free but Consul's lock delay after the previous
			// holder's session ended still runs: try again shortly.
			if freeSince.IsZero() {
				freeSince = time.Now()
			} else if !wait && time.Since(freeSince) > 3*c.lockDelay+2*time.Second {
				k.release()
				return nil, nil, fmt.Errorf("could not acquire the free lock %s for %s", key, time.Since(freeSince).Round(time.Second))
			}
			if err := blocking.Sleep(ctx, c.lockDelay/2+50*time.Millisecond); err != nil {
				k.release()
				if held != nil {
					return nil, nil, fmt.Errorf("%w: %w", err, held)
				}
				return nil, nil, err
			}
			continue
		}
		log.Debug("waiting for the lock", "holder", held.Holder)
		if _, _, err := c.kv.Get(key, (&api.QueryOptions{WaitIndex: waitIndex, WaitTime: time.Minute}).WithContext(ctx)); err != nil {
			k.release()
			if ctx.Err() != nil {
				return nil, nil, fmt.Errorf("%w: %w", ctx.Err(), held)
			}
			return nil, nil, fmt.Errorf("waiting for the lock of %s: %w", app, err)
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

// lockKeeper keeps a lock's session alive and reports its loss.
type lockKeeper struct {
	c        *Consul
	app      string
	key, sid string
	cancel   context.CancelFunc
	lost     chan struct{}
	lostOnce sync.Once
	relOnce  sync.Once
	log      hclog.Logger
}

func (k *lockKeeper) markLost(why string) {
	// The store stays bound to the lost session until release: every
	// write of the rollout's state fails from now on.
	k.lostOnce.Do(func() {
		k.log.Warn("lock lost", "reason", why)
		close(k.lost)
	})
}

// release gives the key back, destroys the session and closes lost. It is
// idempotent and never blocks for more than a few seconds.
func (k *lockKeeper) release() {
	k.relOnce.Do(func() {
		k.c.sessions.CompareAndDelete(k.app, k.sid)
		k.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		wo := (&api.WriteOptions{}).WithContext(ctx)
		// Releasing before destroying avoids the lock delay for the next
		// holder.
		if _, _, err := k.c.kv.Release(&api.KVPair{Key: k.key, Session: k.sid}, wo); err != nil {
			k.log.Debug("releasing the lock key", "error", err)
		}
		if _, err := k.c.client.Session().Destroy(k.sid, wo); err != nil {
			k.log.Debug("destroying the lock session", "error", err)
		}
		k.lostOnce.Do(func() { close(k.lost) })
	})
}

// renew renews the session every TTL/2. The session counts as lost when
// Consul no longer knows it, or when no renewal succeeded for a whole TTL.
func (k *lockKeeper) renew(ctx context.Context) {
	ttl := k.c.ttl
	wait := ttl / 2
	lastOK := time.Now()
	for {
		if err := blocking.Sleep(ctx, wait); err != nil {
			return
		}
		entry, _, err := k.c.client.Session().Renew(k.sid, (&api.WriteOptions{}).WithContext(ctx))
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if time.Since(lastOK) > ttl {
				k.markLost(fmt.Sprintf("could not renew the session for %s: %v", ttl, err))
				return
			}
			k.log.Debug("renewing the lock session", "error", err)
			wait = min(time.Second, ttl/4)
		case entry == nil:
			k.markLost("the session expired or was destroyed")
			return
		default:
			lastOK = time.Now()
			if d, perr := time.ParseDuration(entry.TTL); perr == nil && d > 0 {
				ttl = d
			}
			wait = ttl / 2
		}
	}
}

// lockWatchTiming paces the lock key's watch: no minimum interval (the key
// changes rarely, and a change may be the loss), a backoff from 250 ms to
// 5 s while Consul fails.
var lockWatchTiming = blocking.Timing{
	BackoffBase: 250 * time.Millisecond,
	BackoffMax:  5 * time.Second,
	WaitTime:    5 * time.Minute,
}

// watch follows the lock key with blocking queries and reports the loss
// when the key no longer belongs to the session.
func (k *lockKeeper) watch(ctx context.Context) {
	l := blocking.New(blocking.Config{Name: "lock key", Timing: lockWatchTiming, Logger: k.log},
		func(ctx context.Context, waitIndex uint64) (*api.KVPair, uint64, error) {
			q := &api.QueryOptions{WaitIndex: waitIndex, WaitTime: lockWatchTiming.WaitTime}
			pair, meta, err := k.c.kv.Get(k.key, q.WithContext(ctx))
			if err != nil {
				return nil, 0, fmt.Errorf("watching the lock key %s: %w", k.key, err)
			}
			return pair, meta.LastIndex, nil
		},
		func(pair *api.KVPair) error {
			if pair == nil || pair.Session != k.sid {
				k.markLost("the lock key no longer belongs to this session")
				return blocking.ErrStop
			}
			return nil
		})
	_ = l.Run(ctx)
}

// IsLockHeld reports whether err says that another controller holds a lock,
// and returns its description.
func IsLockHeld(err error) (*LockHeldError, bool) {
	var held *LockHeldError
	ok := errors.As(err, &held)
	return held, ok
}
