package checks

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// A loop follows one blocking query, the way consul-template's watch/view.go
// does:
//
//	    +--------------------------------------------------+
//	    v                                                  |
//	 pacing --(min interval since the last call, jitter)--> fetch(waitIndex)
//	                                                        |   |
//	ok, index moved: publish, waitIndex = index  <----------+   |
//	ok, index same:  ignore (the wait timed out)                |
//	ok, index went backwards: publish, waitIndex = 0            |
//	error: failures++, backoff(failures) (grows, capped) <------+
//	       the first success after errors resets failures
//
// Every wait is cancelled by ctx. The loop is ready once its first response
// was published; it is failing from the first error until the next success.
type loop[T any] struct {
	name    string
	fetch   func(ctx context.Context, waitIndex uint64) (T, uint64, error)
	publish func(T)
	timing  Timing
	clk     clock
	logger  hclog.Logger

	ready     chan struct{}
	readyOnce sync.Once
	fetches   atomic.Uint64

	mu           sync.Mutex
	failingSince time.Time // zero while the last fetch succeeded
	failures     int
	lastErr      error
}

// Timing tunes the blocking-query loops.
type Timing struct {
	// MinInterval is the least time between two calls of one loop; a
	// jitter of up to a fifth of it is added.
	MinInterval time.Duration
	// BackoffBase is the wait after the first failed call; it doubles with
	// each consecutive failure up to BackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// WaitTime is the longest a blocking query is held by the server.
	WaitTime time.Duration
}

// clock is injected time: now, a context-aware sleep and the jitter source
// (a random duration in [0, n)).
type clock struct {
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
	jitter func(n time.Duration) time.Duration
}

func newLoop[T any](name string, t Timing, clk clock, logger hclog.Logger,
	fetch func(context.Context, uint64) (T, uint64, error), publish func(T)) *loop[T] {
	return &loop[T]{
		name:    name,
		fetch:   fetch,
		publish: publish,
		timing:  t,
		clk:     clk,
		logger:  logger.With("watch", name),
		ready:   make(chan struct{}),
	}
}

// nextIndex decides what a successful response means: the wait index for
// the next call, and whether the response carries data to publish. The
// first response is always published.
func nextIndex(prev, got uint64, first bool) (next uint64, publish bool) {
	switch {
	case first:
		return got, true
	case got == prev:
		// The blocking query timed out without a change.
		return prev, false
	case got < prev:
		// The index went backwards (a server restored a snapshot, a new
		// leader, a reset store): the data is current, but waiting on the
		// old index would block until the new one passes it.
		return 0, true
	default:
		return got, true
	}
}

// backoff is the wait after the n-th consecutive failure (n >= 1), before
// jitter: base, 2*base, 4*base, ... capped at max.
func backoff(n int, base, max time.Duration) time.Duration {
	if n < 1 {
		return 0
	}
	d := base
	for i := 1; i < n; i++ {
		d *= 2
		if d >= max || d <= 0 {
			return max
		}
	}
	if d > max {
		return max
	}
	return d
}

// pace is how long to wait before the next call, given when the last one
// started: the rest of the minimum interval plus jitter, or 0.
func (l *loop[T]) pace(lastStart time.Time) time.Duration {
	if lastStart.IsZero() {
		return 0
	}
	rest := l.timing.MinInterval - l.clk.now().Sub(lastStart)
	if rest <= 0 {
		return 0
	}
	return rest + l.clk.jitter(l.timing.MinInterval/5)
}

// run follows the query until ctx ends.
func (l *loop[T]) run(ctx context.Context) {
	var (
		index     uint64
		first     = true
		lastStart time.Time
	)
	l.logger.Debug("watch started")
	defer l.logger.Debug("watch stopped")
	for {
		if d := l.pace(lastStart); d > 0 {
			if l.clk.sleep(ctx, d) != nil {
				return
			}
		}
		if ctx.Err() != nil {
			return
		}
		lastStart = l.clk.now()
		data, got, err := l.fetch(ctx, index)
		l.fetches.Add(1)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			n := l.fail(err)
			d := backoff(n, l.timing.BackoffBase, l.timing.BackoffMax)
			d -= l.clk.jitter(d / 5)
			l.logger.Warn("query failed", "error", err, "failures", n, "retry_in", d)
			if l.clk.sleep(ctx, d) != nil {
				return
			}
			continue
		}
		if n := l.succeed(); n > 0 {
			l.logger.Info("query recovered", "failures", n)
		}
		next, publish := nextIndex(index, got, first)
		if publish {
			if !first && got < index {
				l.logger.Info("index went backwards, resetting", "from", index, "to", got)
			}
			l.publish(data)
			first = false
			l.readyOnce.Do(func() { close(l.ready) })
			l.logger.Trace("updated", "index", got)
		}
		index = next
	}
}

func (l *loop[T]) fail(err error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == 0 {
		l.failingSince = l.clk.now()
	}
	l.failures++
	l.lastErr = err
	return l.failures
}

func (l *loop[T]) succeed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failures
	l.failures, l.failingSince, l.lastErr = 0, time.Time{}, nil
	return n
}

// state is what Health needs to know of a loop.
type loopState struct {
	name         string
	ready        <-chan struct{}
	failingSince time.Time
	lastErr      error
}

type stateful interface {
	state() loopState
	fetchCount() uint64
}

func (l *loop[T]) state() loopState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loopState{name: l.name, ready: l.ready, failingSince: l.failingSince, lastErr: l.lastErr}
}

func (l *loop[T]) fetchCount() uint64 { return l.fetches.Load() }

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
