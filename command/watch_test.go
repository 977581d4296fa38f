package command

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeKeys is a rollout folder's index: blocking calls return when it
// passes their wait index.
type fakeKeys struct {
	mu      sync.Mutex
	index   uint64
	changed chan struct{}
	calls   int
	fail    error
}

func newFakeKeys() *fakeKeys { return &fakeKeys{index: 7, changed: make(chan struct{})} }

func (f *fakeKeys) bump() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeKeys) changes(ctx context.Context, index uint64) (uint64, error) {
	f.mu.Lock()
	f.calls++
	if err := f.fail; err != nil {
		f.fail = nil
		f.mu.Unlock()
		return index, err
	}
	f.mu.Unlock()
	for {
		f.mu.Lock()
		idx, ch := f.index, f.changed
		f.mu.Unlock()
		if index < idx {
			return idx, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return index, ctx.Err()
		}
	}
}

func fastViews(t *testing.T) {
	t.Helper()
	saved := viewTiming
	viewTiming.MinInterval, viewTiming.BackoffBase, viewTiming.BackoffMax = time.Millisecond, time.Millisecond, 2*time.Millisecond
	t.Cleanup(func() { viewTiming = saved })
}

// status -watch without a terminal reads the rollout once at the start
// and then only when its keys changed; an API error is retried, not a
// reason to read.
func TestPlainWatchReadsOnlyOnChange(t *testing.T) {
	fastViews(t)
	keys := newFakeKeys()
	keys.fail = errors.New("connection refused")
	var (
		mu    sync.Mutex
		loads int
		phase = scheduler.PhaseCanary
		out   = scheduler.OutcomeNone
	)
	loaded := make(chan struct{}, 10)
	load := func(context.Context) (*scheduler.Rollout, error) {
		mu.Lock()
		defer mu.Unlock()
		loads++
		loaded <- struct{}{}
		return &scheduler.Rollout{App: "app", Version: "2.0.0", Phase: phase, Outcome: out}, nil
	}
	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- plainWatch(ctx, &buf, load, keys.changes) }()

	<-loaded // the first read
	mu.Lock()
	phase = scheduler.PhaseWave
	mu.Unlock()
	keys.bump()
	<-loaded
	mu.Lock()
	phase, out = scheduler.PhaseDone, scheduler.OutcomeSucceeded
	mu.Unlock()
	keys.bump()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if loads != 3 {
		t.Errorf("%d reads for two changes, want 3", loads)
	}
	for _, want := range []string{"app 2.0.0 CANARY", "app 2.0.0 WAVE", "app 2.0.0 DONE"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("output misses %q:\n%s", want, buf.String())
		}
	}
}

// The waiter returns once per change and never on an unchanged index.
func TestChangeWaiter(t *testing.T) {
	fastViews(t)
	keys := newFakeKeys()
	w := newChangeWaiter(keys.changes)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.next(ctx); err != nil || w.index != 7 {
		t.Fatalf("first: %v, index %d", err, w.index)
	}
	// Nothing changes: the next wait blocks until its context ends.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := w.next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("idle wait returned %v", err)
	}
	keys.bump()
	if err := w.next(ctx); err != nil || w.index != 8 {
		t.Fatalf("after a change: %v, index %d", err, w.index)
	}
}
