package main

import (
	"context"
	"math"
	"sync"
	"time"
)

// leaker implements EDGEINFER_FAULT_LEAK_MB_PER_S: it holds on to
// rateMBPerS MiB per second of uptime, capped at maxMB, in 1 MiB chunks whose
// pages are all written so that they count in the resident set.
type leaker struct {
	rateMBPerS float64
	maxMB      int

	mu     sync.Mutex
	chunks [][]byte
}

// pageSize is the stride for touching pages; writing one byte every 4 KiB
// commits every page on all platforms Go runs on (larger pages just get
// touched several times).
const pageSize = 4096

// target is the number of MiB that should be held at the given uptime.
func (l *leaker) target(uptime time.Duration) int {
	if l.rateMBPerS <= 0 || uptime <= 0 {
		return 0
	}
	t := math.Floor(l.rateMBPerS * uptime.Seconds())
	if t > float64(l.maxMB) {
		return l.maxMB
	}
	return int(t)
}

// advance allocates until the target for uptime is held; it never frees.
func (l *leaker) advance(uptime time.Duration) {
	want := l.target(uptime)
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.chunks) < want {
		c := make([]byte, leakChunkBytes)
		for i := 0; i < len(c); i += pageSize {
			c[i] = 1
		}
		l.chunks = append(l.chunks, c)
	}
}

func (l *leaker) held() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return uint64(len(l.chunks)) * leakChunkBytes
}

// runLeak advances the leak every tick until ctx ends; it returns at once
// when the leak fault is off.
func (s *server) runLeak(ctx context.Context, tick time.Duration) {
	if s.leak.rateMBPerS <= 0 || s.leak.maxMB <= 0 {
		return
	}
	s.log.Warn("leaking memory (injected fault)", "fault", envLeakRate,
		"mib_per_s", s.leak.rateMBPerS, "max_mib", s.leak.maxMB)
	t := time.NewTicker(tick)
	defer t.Stop()
	capped := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.leak.advance(s.uptime())
			if !capped && s.leak.held() >= uint64(s.leak.maxMB)*leakChunkBytes {
				capped = true
				s.log.Warn("memory leak reached its cap", "fault", envLeakMax, "max_mib", s.leak.maxMB)
			}
		}
	}
}
