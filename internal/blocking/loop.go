package blocking

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// ErrStop, returned by a Loop's publish function, ends Run without an
// error: the caller saw what it waited for.
var ErrStop = errors.New("blocking: stop")

// Fetch is one blocking call: it asks for news after waitIndex and returns
// the data, the index of the response and an error.
type Fetch[T any] func(ctx context.Context, waitIndex uint64) (T, uint64, error)

// Config names and tunes a Loop.
type Config struct {
	// Name names the loop in its logs and its State.
	Name   string
	Timing Timing
	// Clock is the zero (real) clock unless a test injects one.
	Clock  Clock
	Logger hclog.Logger
}

// Loop follows one blocking query (see the package documentation). It is
// ready once its first response was published, and failing from the first
// error until the next success.
type Loop[T any] struct {
	name    string
	fetch   Fetch[T]
	publish func(T) error
	timing  Timing
	clk     Clock
	logger  hclog.Logger

	ready     chan struct{}
	readyOnce sync.Once
	fetches   atomic.Uint64

	mu           sync.Mutex
	failingSince time.Time // zero while the last fetch succeeded
	failures     int
	lastErr      error
}

// New returns a loop that calls fetch and hands each response with news to
// publish. It starts nothing until Run.
func New[T any](cfg Config, fetch Fetch[T], publish func(T) error) *Loop[T] {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if cfg.Name != "" {
		logger = logger.With("watch", cfg.Name)
	}
	return &Loop[T]{
		name:    cfg.Name,
		fetch:   fetch,
		publish: publish,
		timing:  cfg.Timing,
		clk:     cfg.Clock,
		logger:  logger,
		ready:   make(chan struct{}),
	}
}

// NextIndex decides what a successful response means: the wait index for
// the next call, and whether the response carries data to publish. The
// first response is always published.
func NextIndex(prev, got uint64, first bool) (next uint64, publish bool) {
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

// Run follows the query until ctx ends (it returns ctx.Err()) or publish
// returns an error: nil for ErrStop, else that error.
func (l *Loop[T]) Run(ctx context.Context) error {
	var (
		index     uint64
		first     = true
		lastStart time.Time
	)
	l.logger.Debug("watch started")
	defer l.logger.Debug("watch stopped")
	for {
		if d := l.timing.Pause(l.clk, lastStart); d > 0 {
			if err := l.clk.Sleep(ctx, d); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		lastStart = l.clk.Now()
		data, got, err := l.fetch(ctx, index)
		l.fetches.Add(1)
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			n := l.fail(err)
			d := l.timing.RetryIn(l.clk, n)
			l.logger.Warn("query failed", "error", err, "failures", n, "retry_in", d)
			if err := l.clk.Sleep(ctx, d); err != nil {
				return err
			}
			continue
		}
		if n := l.succeed(); n > 0 {
			l.logger.Info("query recovered", "failures", n)
		}
		next, publish := NextIndex(index, got, first)
		if publish {
			if !first && got < index {
				l.logger.Info("index went backwards, resetting", "from", index, "to", got)
			}
			perr := l.publish(data)
			first = false
			l.readyOnce.Do(func() { close(l.ready) })
			l.logger.Trace("updated", "index", got)
			if errors.Is(perr, ErrStop) {
				return nil
			}
			if perr != nil {
				return perr
			}
		}
		index = next
	}
}

func (l *Loop[T]) fail(err error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == 0 {
		l.failingSince = l.clk.Now()
	}
	l.failures++
	l.lastErr = err
	return l.failures
}

func (l *Loop[T]) succeed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.failures
	l.failures, l.failingSince, l.lastErr = 0, time.Time{}, nil
	return n
}

// State is what a reader of a loop's data needs to know of the loop.
type State struct {
	Name string
	// Ready is closed once the first response was published.
	Ready <-chan struct{}
	// FailingSince is when the current run of failures started; zero
	// while the last call succeeded. LastErr is its last error.
	FailingSince time.Time
	LastErr      error
}

// State reports the loop's state.
func (l *Loop[T]) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	return State{Name: l.name, Ready: l.ready, FailingSince: l.failingSince, LastErr: l.lastErr}
}

// Ready is closed once the first response was published.
func (l *Loop[T]) Ready() <-chan struct{} { return l.ready }

// Fetches is the number of calls made so far.
func (l *Loop[T]) Fetches() uint64 { return l.fetches.Load() }
