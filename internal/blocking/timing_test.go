package blocking

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	base, max := 250*time.Millisecond, 5*time.Second
	tests := []struct {
		n    int
		want time.Duration
	}{
		{0, 0},
		{1, 250 * time.Millisecond},
		{2, 500 * time.Millisecond},
		{3, time.Second},
		{4, 2 * time.Second},
		{5, 4 * time.Second},
		{6, 5 * time.Second},
		{7, 5 * time.Second},
		{1000, 5 * time.Second},
	}
	for _, tt := range tests {
		if got := Backoff(tt.n, base, max); got != tt.want {
			t.Errorf("Backoff(%d) = %s, want %s", tt.n, got, tt.want)
		}
	}
	if got := Backoff(1, 10*time.Second, 5*time.Second); got != 5*time.Second {
		t.Errorf("a base above the cap gives %s, want the cap", got)
	}
}

// From store: the lock keeper's backoff in plain numbers.
func TestBackoffSmallNumbers(t *testing.T) {
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := Backoff(i+1, 100, 1000); got != w {
			t.Errorf("Backoff(%d) = %d, want %d", i+1, got, w)
		}
	}
}

// From agent: the device agent's timing.
func TestBackoffAgentTiming(t *testing.T) {
	for n, want := range map[int]time.Duration{0: 0, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 30 * time.Second, 100: 30 * time.Second} {
		if got := Backoff(n, time.Second, 30*time.Second); got != want {
			t.Errorf("Backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// From registry: RetryIn never passes the cap, grows, and reaches the cap.
func TestRetryIn(t *testing.T) {
	timing := Timing{BackoffBase: 100 * time.Millisecond, BackoffMax: time.Second}
	prev := time.Duration(0)
	for n := 1; n <= 8; n++ {
		d := timing.RetryIn(Clock{}, n)
		if d > timing.BackoffMax {
			t.Errorf("RetryIn(%d) = %s over the cap", n, d)
		}
		if n <= 3 && d < prev {
			t.Errorf("RetryIn(%d) = %s shrank from %s", n, d, prev)
		}
		if lo := Backoff(n, timing.BackoffBase, timing.BackoffMax) * 4 / 5; d < lo {
			t.Errorf("RetryIn(%d) = %s, more than a fifth under the backoff", n, d)
		}
		prev = d
	}
	noJitter := Clock{JitterFunc: func(time.Duration) time.Duration { return 0 }}
	if d := timing.RetryIn(noJitter, 20); d != timing.BackoffMax {
		t.Errorf("RetryIn(20) = %s, want the cap", d)
	}
}

func TestPause(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clk := Clock{NowFunc: func() time.Time { return now }, JitterFunc: func(n time.Duration) time.Duration { return n / 2 }}
	timing := Timing{MinInterval: 100 * time.Millisecond}
	for _, tt := range []struct {
		name string
		last time.Time
		want time.Duration
	}{
		{"no previous call", time.Time{}, 0},
		{"interval passed", now.Add(-time.Second), 0},
		{"rest of the interval plus jitter", now.Add(-40 * time.Millisecond), 60*time.Millisecond + 10*time.Millisecond},
	} {
		if got := timing.Pause(clk, tt.last); got != tt.want {
			t.Errorf("%s: Pause = %s, want %s", tt.name, got, tt.want)
		}
	}
}

func TestSleep(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context = %v", err)
	}
	if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep(0) on a cancelled context = %v", err)
	}
}
