package blocking

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

func TestNextIndex(t *testing.T) {
	tests := []struct {
		name        string
		prev, got   uint64
		first       bool
		next        uint64
		wantPublish bool
	}{
		{"first response", 0, 42, true, 42, true},
		{"first response with index 0", 0, 0, true, 0, true},
		{"index moved", 42, 50, false, 50, true},
		{"index unchanged: wait timed out", 42, 42, false, 42, false},
		{"index went backwards: reset to 0", 42, 7, false, 0, true},
		{"after a reset any index is new", 0, 7, false, 7, true},
		{"after a reset index 0 again is ignored", 0, 0, false, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, pub := NextIndex(tt.prev, tt.got, tt.first)
			if next != tt.next || pub != tt.wantPublish {
				t.Errorf("NextIndex(%d, %d, %v) = %d, %v; want %d, %v", tt.prev, tt.got, tt.first, next, pub, tt.next, tt.wantPublish)
			}
		})
	}
}

// fakeClock advances only when the loop sleeps or a fetch takes time.
type fakeClock struct {
	mu     sync.Mutex
	t      time.Time
	sleeps []time.Duration
	jit    time.Duration // returned by jitter (capped at n)
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) clock() Clock {
	return Clock{
		NowFunc: func() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t },
		SleepFunc: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			c.mu.Lock()
			defer c.mu.Unlock()
			c.sleeps = append(c.sleeps, d)
			c.t = c.t.Add(d)
			return nil
		},
		JitterFunc: func(n time.Duration) time.Duration {
			if c.jit > n {
				return n
			}
			return c.jit
		},
	}
}

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// step is one scripted fetch: the index answered, or an error; took is how
// long the call lasted.
type step struct {
	index uint64
	err   error
	took  time.Duration
}

type loopRun struct {
	waitIndexes []uint64 // what each call asked for
	published   []int    // the step numbers published
	sleeps      []time.Duration
	states      []State // the loop's state after each step
}

// runScript drives a loop through the steps and stops it at the call after
// the last (so sleeps include the pacing before that call).
func runScript(t *testing.T, timing Timing, jitter time.Duration, steps []step) loopRun {
	t.Helper()
	clk := newFakeClock()
	clk.jit = jitter
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var run loopRun
	var l *Loop[int]
	n := 0
	fetch := func(ctx context.Context, idx uint64) (int, uint64, error) {
		if n > 0 {
			run.states = append(run.states, l.State())
		}
		if n == len(steps) {
			cancel()
			return 0, 0, ctx.Err()
		}
		s := steps[n]
		n++
		run.waitIndexes = append(run.waitIndexes, idx)
		clk.advance(s.took)
		return n - 1, s.index, s.err
	}
	l = New(Config{Name: "test", Timing: timing, Clock: clk.clock(), Logger: hclog.NewNullLogger()}, fetch, func(i int) error {
		run.published = append(run.published, i)
		return nil
	})
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("loop did not stop")
	}
	run.sleeps = clk.sleeps
	if got := l.Fetches(); got != uint64(len(steps)+1) {
		t.Errorf("fetchCount = %d, want %d", got, len(steps)+1)
	}
	return run
}

func TestLoop(t *testing.T) {
	ms := time.Millisecond
	timing := Timing{MinInterval: 100 * ms, BackoffBase: 250 * ms, BackoffMax: 2 * time.Second, WaitTime: time.Minute}
	boom := errors.New("connection refused")
	tests := []struct {
		name        string
		jitter      time.Duration
		steps       []step
		waitIndexes []uint64
		published   []int
		sleeps      []time.Duration
	}{
		{
			name:        "wait index comes from the last response",
			steps:       []step{{index: 5, took: time.Second}, {index: 9, took: time.Second}, {index: 12, took: time.Second}},
			waitIndexes: []uint64{0, 5, 9},
			published:   []int{0, 1, 2},
			sleeps:      nil, // each blocking call outlasted the min interval
		},
		{
			name:        "unchanged index is ignored",
			steps:       []step{{index: 5, took: time.Second}, {index: 5, took: time.Second}, {index: 5, took: time.Second}, {index: 6, took: time.Second}},
			waitIndexes: []uint64{0, 5, 5, 5},
			published:   []int{0, 3},
		},
		{
			name:        "index going backwards resets it to 0 and publishes",
			steps:       []step{{index: 100, took: time.Second}, {index: 3, took: time.Second}, {index: 4, took: time.Second}, {index: 4, took: time.Second}},
			waitIndexes: []uint64{0, 100, 0, 4},
			published:   []int{0, 1, 2},
		},
		{
			name:        "min interval between fast answers, with jitter",
			jitter:      7 * ms,
			steps:       []step{{index: 1}, {index: 2, took: 30 * ms}, {index: 3, took: 150 * ms}, {index: 4}},
			waitIndexes: []uint64{0, 1, 2, 3},
			published:   []int{0, 1, 2, 3},
			sleeps:      []time.Duration{107 * ms, 77 * ms, 107 * ms},
		},
		{
			name: "backoff grows, caps and resets on success",
			steps: []step{
				{err: boom}, {err: boom}, {err: boom}, {err: boom}, {err: boom},
				{index: 8}, {err: boom}, {index: 9},
			},
			waitIndexes: []uint64{0, 0, 0, 0, 0, 0, 8, 8},
			published:   []int{5, 7},
			sleeps: []time.Duration{
				250 * ms, 500 * ms, time.Second, 2 * time.Second, 2 * time.Second, // grows, capped
				100 * ms, // min interval after the success
				250 * ms, // reset
				100 * ms,
			},
		},
		{
			name:        "backoff jitter shortens the wait by at most a fifth",
			jitter:      time.Hour,
			steps:       []step{{err: boom}, {err: boom}, {index: 1}},
			waitIndexes: []uint64{0, 0, 0},
			published:   []int{2},
			sleeps:      []time.Duration{200 * ms, 400 * ms, 120 * ms}, // min interval jitter capped at a fifth too
		},
		{
			name:        "a failure keeps the wait index",
			steps:       []step{{index: 30, took: time.Second}, {err: boom}, {index: 30}, {index: 31}},
			waitIndexes: []uint64{0, 30, 30, 30},
			published:   []int{0, 3},
			sleeps:      []time.Duration{250 * ms, 100 * ms, 100 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := runScript(t, timing, tt.jitter, tt.steps)
			if !reflect.DeepEqual(run.waitIndexes, tt.waitIndexes) {
				t.Errorf("wait indexes = %v, want %v", run.waitIndexes, tt.waitIndexes)
			}
			if !reflect.DeepEqual(run.published, tt.published) {
				t.Errorf("published = %v, want %v", run.published, tt.published)
			}
			if !reflect.DeepEqual(run.sleeps, tt.sleeps) {
				t.Errorf("sleeps = %v, want %v", run.sleeps, tt.sleeps)
			}
		})
	}
}

func TestLoopFailingState(t *testing.T) {
	ms := time.Millisecond
	timing := Timing{MinInterval: 100 * ms, BackoffBase: 250 * ms, BackoffMax: 2 * time.Second}
	boom := errors.New("boom")
	run := runScript(t, timing, 0, []step{{index: 1}, {err: boom}, {err: boom}, {index: 2}})
	// states[i] is the state after step i.
	if len(run.states) != 4 {
		t.Fatalf("states: %d", len(run.states))
	}
	if !run.states[0].FailingSince.IsZero() {
		t.Errorf("after a success the loop is failing")
	}
	s1, s2 := run.states[1], run.states[2]
	if s1.FailingSince.IsZero() || !errors.Is(s1.LastErr, boom) {
		t.Errorf("after an error: %+v", s1)
	}
	if !s2.FailingSince.Equal(s1.FailingSince) {
		t.Errorf("failingSince moved on the second failure: %s -> %s", s1.FailingSince, s2.FailingSince)
	}
	if s := run.states[3]; !s.FailingSince.IsZero() || s.LastErr != nil {
		t.Errorf("success did not clear the failure: %+v", s)
	}
	select {
	case <-run.states[0].Ready:
	default:
		t.Error("not ready after the first response")
	}
}

func TestLoopNotReadyUntilFirstSuccess(t *testing.T) {
	timing := Timing{MinInterval: time.Millisecond, BackoffBase: time.Millisecond, BackoffMax: time.Millisecond}
	run := runScript(t, timing, 0, []step{{err: errors.New("down")}, {err: errors.New("down")}})
	for i, s := range run.states {
		select {
		case <-s.Ready:
			t.Errorf("ready after step %d, which failed", i)
		default:
		}
	}
	if len(run.published) != 0 {
		t.Errorf("published %v", run.published)
	}
}

func TestLoopStopsOnCancelDuringWait(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	timing := Timing{MinInterval: time.Hour, BackoffBase: time.Hour, BackoffMax: time.Hour}
	calls := 0
	l := New(Config{Name: "test", Timing: timing},
		func(ctx context.Context, idx uint64) (int, uint64, error) {
			calls++
			if calls == 1 {
				return 0, 1, nil // then the loop waits an hour before the next call
			}
			return 0, 0, errors.New("down")
		}, func(int) error { return nil })
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	<-l.Ready()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("loop ignored the cancelled context")
	}
	if calls != 1 {
		t.Errorf("calls = %d", calls)
	}
}

func TestLoopStopsWhenPublishSaysSo(t *testing.T) {
	boom := errors.New("device offline")
	for _, tt := range []struct {
		name  string
		ret   error
		want  error
		calls int
	}{
		{"ErrStop ends without an error", ErrStop, nil, 2},
		{"another error is returned", boom, boom, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			l := New(Config{Timing: Timing{}},
				func(ctx context.Context, idx uint64) (int, uint64, error) {
					calls++
					return calls, uint64(calls), nil
				},
				func(n int) error {
					if n == 2 {
						return tt.ret
					}
					return nil
				})
			if err := l.Run(context.Background()); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			if calls != tt.calls {
				t.Errorf("calls = %d, want %d", calls, tt.calls)
			}
		})
	}
}

func TestLoopReturnsContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	l := New(Config{Timing: Timing{BackoffBase: time.Hour, BackoffMax: time.Hour}},
		func(ctx context.Context, idx uint64) (int, uint64, error) {
			cancel()
			return 0, 0, errors.New("down")
		}, func(int) error { return nil })
	if err := l.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
}
