package blocking

import (
	"context"
	"math/rand/v2"
	"time"
)

// Timing tunes a blocking-query loop or a retry loop.
type Timing struct {
	// MinInterval is the least time between the starts of two calls; a
	// jitter of up to a fifth of it is added.
	MinInterval time.Duration
	// BackoffBase is the wait after the first failed call; it doubles with
	// each consecutive failure up to BackoffMax.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// WaitTime is the longest the server holds a blocking query.
	WaitTime time.Duration
}

// Pause is how long to wait before the next call when the previous one
// started at last: the rest of MinInterval plus up to a fifth of it as
// jitter, or 0 when there was no previous call or MinInterval has passed.
func (t Timing) Pause(clk Clock, last time.Time) time.Duration {
	if last.IsZero() {
		return 0
	}
	rest := t.MinInterval - clk.Now().Sub(last)
	if rest <= 0 {
		return 0
	}
	return rest + clk.Jitter(t.MinInterval/5)
}

// RetryIn is the wait after the n-th consecutive failure: Backoff less up
// to a fifth of it as jitter, so that retries of many callers spread out.
func (t Timing) RetryIn(clk Clock, n int) time.Duration {
	d := Backoff(n, t.BackoffBase, t.BackoffMax)
	return d - clk.Jitter(d/5)
}

// Backoff is the wait after the n-th consecutive failure (n >= 1), before
// jitter: base, 2*base, 4*base, ... capped at max; 0 for n < 1.
func Backoff(n int, base, max time.Duration) time.Duration {
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

// Clock is injected time: now, a context-aware sleep and the jitter source
// (a random duration in [0, n)). A nil field takes the real one, so the
// zero Clock is the real clock.
type Clock struct {
	NowFunc    func() time.Time
	SleepFunc  func(ctx context.Context, d time.Duration) error
	JitterFunc func(n time.Duration) time.Duration
}

// Now is the current time.
func (c Clock) Now() time.Time {
	if c.NowFunc != nil {
		return c.NowFunc()
	}
	return time.Now()
}

// Sleep waits d or until ctx ends (then it returns ctx.Err()).
func (c Clock) Sleep(ctx context.Context, d time.Duration) error {
	if c.SleepFunc != nil {
		return c.SleepFunc(ctx, d)
	}
	return Sleep(ctx, d)
}

// Jitter is a random duration in [0, n); 0 when n <= 0.
func (c Clock) Jitter(n time.Duration) time.Duration {
	if c.JitterFunc != nil {
		return c.JitterFunc(n)
	}
	if n <= 0 {
		return 0
	}
	return rand.N(n)
}

// Sleep waits d or until ctx ends; it returns ctx.Err() when ctx ended.
func Sleep(ctx context.Context, d time.Duration) error {
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
