package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

const mib = 1 << 20

func TestLeakTarget(t *testing.T) {
	l := leaker{rateMBPerS: 5, maxMB: 512}
	for _, tt := range []struct {
		uptime time.Duration
		want   int
	}{
		{0, 0}, {100 * time.Millisecond, 0}, {200 * time.Millisecond, 1}, {time.Second, 5},
		{2500 * time.Millisecond, 12}, {100 * time.Second, 500}, {103 * time.Second, 512}, {time.Hour, 512},
	} {
		if got := l.target(tt.uptime); got != tt.want {
			t.Errorf("uptime %v: target %d MiB, want %d", tt.uptime, got, tt.want)
		}
	}
	if got := (&leaker{rateMBPerS: 0.5, maxMB: 512}).target(3 * time.Second); got != 1 {
		t.Errorf("0.5 MiB/s for 3s: %d, want 1", got)
	}
	if got := (&leaker{maxMB: 512}).target(time.Hour); got != 0 {
		t.Errorf("no leak: %d", got)
	}
}

func TestFaultLeakThroughServer(t *testing.T) {
	ts := newTestServer(t, map[string]string{envLeakRate: "4", envLeakMax: "10"})
	steps := []struct {
		advance time.Duration
		wantMiB uint64
	}{
		{0, 0}, {time.Second, 4}, {500 * time.Millisecond, 6}, {time.Hour, 10},
	}
	for _, st := range steps {
		ts.clock.Advance(st.advance)
		ts.leak.advance(ts.uptime())
		if got := ts.metrics(t).LeakedBytes; got != st.wantMiB*mib {
			t.Errorf("uptime %v: leaked %d bytes, want %d MiB", ts.uptime(), got, st.wantMiB)
		}
	}
}

func TestLeakGrowsRSS(t *testing.T) {
	// Give freed heap back to the OS first, or the leak may reuse pages that
	// are already resident.
	debug.FreeOSMemory()
	before, err := readRSS()
	if err != nil {
		t.Fatal(err)
	}
	l := leaker{rateMBPerS: 48, maxMB: 512}
	l.advance(time.Second)
	after, _ := readRSS()
	if l.held() != 48*mib {
		t.Fatalf("held %d", l.held())
	}
	// Untouched allocations would not grow RSS; touched ones do.
	if grew := int64(after) - int64(before); grew < 40*mib {
		t.Errorf("RSS grew by %d MiB, want >= 40", grew/mib)
	}
	runtime.KeepAlive(&l)
}

func TestRunLeakLoop(t *testing.T) {
	// The background loop uses the server's clock: with the fake clock 10s
	// ahead it reaches the 3 MiB cap within a few real ticks.
	ts := newTestServer(t, map[string]string{envLeakRate: "1", envLeakMax: "3"})
	ts.clock.Advance(10 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ts.runLeak(ctx, time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for ts.leak.held() < 3*mib && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if ts.leak.held() != 3*mib {
		t.Errorf("held %d, want 3 MiB", ts.leak.held())
	}
	// Off: returns at once.
	off := newTestServer(t, nil)
	finished := make(chan struct{})
	go func() { off.runLeak(context.Background(), time.Millisecond); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("runLeak without the fault did not return")
	}
}
