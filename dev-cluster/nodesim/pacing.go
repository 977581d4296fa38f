package main

import (
	"context"
	"sync/atomic"
	"time"
)

// lagMonitor measures how late the simulator's goroutines run: a timer set
// every lagTick fires late by the time the process is behind (CPU, the Go
// collector). A member answers the Consul server's probes within 500 ms
// and a Nomad client heartbeats within its TTL only while that lag stays
// well below; starting more devices while it does not would fail the ones
// already up (the server declares them failed or down, which is more
// gossip and more Raft writes: a collapse, seen at ~900 devices on 2 busy
// cores). startAll waits for the lag to settle before each start.
type lagMonitor struct {
	lagMs atomic.Int64 // the largest lag of the last lagWindow
}

const (
	lagTick   = 100 * time.Millisecond
	lagWindow = 10 // ticks
)

func (l *lagMonitor) run(ctx context.Context) {
	var recent [lagWindow]int64
	for i := 0; ; i++ {
		start := time.Now()
		select {
		case <-ctx.Done():
			return
		case <-time.After(lagTick):
		}
		recent[i%lagWindow] = max(0, int64(time.Since(start)-lagTick)/int64(time.Millisecond))
		worst := int64(0)
		for _, v := range recent {
			worst = max(worst, v)
		}
		l.lagMs.Store(worst)
	}
}

// wait returns once the lag is below limit (or ctx is done). It reports
// whether it had to wait.
func (l *lagMonitor) wait(ctx context.Context, limit time.Duration) bool {
	waited := false
	for time.Duration(l.lagMs.Load())*time.Millisecond > limit {
		waited = true
		select {
		case <-ctx.Done():
			return waited
		case <-time.After(lagTick):
		}
	}
	return waited
}
