package agent

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Timing tunes the blocking-query loops.
type Timing struct {
	// MinInterval is the least time between two calls of one loop; up to
	// a fifth of it is added as jitter.
	MinInterval time.Duration
	// BackoffBase is the wait after the first failed call; it doubles with
	// each consecutive failure up to BackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// WaitTime is the longest the server holds a blocking query.
	WaitTime time.Duration
}

// DefaultTiming suits a device: few calls, quick recovery.
var DefaultTiming = Timing{
	MinInterval: time.Second,
	BackoffBase: time.Second,
	BackoffMax:  30 * time.Second,
	WaitTime:    5 * time.Minute,
}

// follow runs one blocking query until ctx ends:
//
//	   +------------------------------------------------+
//	   v                                                |
//	pacing --(MinInterval since the last call, jitter)--> fetch(waitIndex)
//	                                                     |   |
//	ok, index moved: changed(), waitIndex = index <------+   |
//	ok, index same:  nothing (the wait timed out)            |
//	ok, index went backwards: changed(), waitIndex = 0       |
//	error: failures++, wait backoff(failures) <--------------+
//	       (doubles, capped; the next success resets it)
//
// fetch keeps what it read; changed is called after each fetch that
// brought news (the first one always does).
func follow(ctx context.Context, logger hclog.Logger, t Timing, fetch func(ctx context.Context, waitIndex uint64) (uint64, error), changed func()) {
	var (
		index     uint64
		first     = true
		failures  int
		lastStart time.Time
	)
	for {
		if !lastStart.IsZero() {
			if rest := t.MinInterval - time.Since(lastStart); rest > 0 {
				if sleepCtx(ctx, rest+jitter(t.MinInterval/5)) != nil {
					return
				}
			}
		}
		if ctx.Err() != nil {
			return
		}
		lastStart = time.Now()
		got, err := fetch(ctx, index)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			d := backoff(failures, t.BackoffBase, t.BackoffMax)
			d -= jitter(d / 5)
			logger.Warn("query failed", "error", err, "failures", failures, "retry_in", d)
			if sleepCtx(ctx, d) != nil {
				return
			}
			continue
		}
		if failures > 0 {
			logger.Info("query recovered", "failures", failures)
			failures = 0
		}
		next, news := nextIndex(index, got, first)
		if news && !first && got < index {
			logger.Info("index went backwards, resetting", "from", index, "to", got)
		}
		first = false
		index = next
		if news {
			changed()
		}
	}
}

// nextIndex decides what a successful answer means: the wait index for the
// next call, and whether the answer may carry news.
func nextIndex(prev, got uint64, first bool) (next uint64, news bool) {
	switch {
	case first:
		return got, true
	case got == prev:
		return prev, false
	case got < prev:
		// A restored snapshot, a new leader, a reset store: waiting on the
		// old index would block until the new one passes it.
		return 0, true
	default:
		return got, true
	}
}

// backoff is the wait after the n-th consecutive failure: base, 2*base,
// 4*base, ... capped at max.
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
	return min(d, max)
}

func jitter(n time.Duration) time.Duration {
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// sleepCtx waits d or until ctx ends (then it returns ctx.Err()).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
