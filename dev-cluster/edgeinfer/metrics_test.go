package main

import (
	"strings"
	"testing"
	"time"
)

func TestLatencyWindow(t *testing.T) {
	w := newLatencyWindow(5)
	if w.p95() != 0 || w.errorRate() != 0 || w.len() != 0 {
		t.Fatal("empty window not zero")
	}
	w.add(7*time.Millisecond, false)
	if w.p95() != 7*time.Millisecond || w.len() != 1 {
		t.Errorf("one sample: p95 %v", w.p95())
	}
	// 1..5 ms with the 2nd failed; p95 of 5 = ceil(4.75) = 5th = 5ms.
	w = newLatencyWindow(5)
	for i := 1; i <= 5; i++ {
		w.add(time.Duration(i)*time.Millisecond, i == 2)
	}
	if w.p95() != 5*time.Millisecond || w.errorRate() != 0.2 {
		t.Errorf("p95 %v rate %v", w.p95(), w.errorRate())
	}
	// Two more push out 1ms and the failed 2ms.
	w.add(time.Millisecond, false)
	w.add(time.Millisecond, false)
	if w.len() != 5 || w.errorRate() != 0 {
		t.Errorf("after wrap: len %d rate %v", w.len(), w.errorRate())
	}
	// Window now holds 3,4,5,1,1 ms.
	if w.p95() != 5*time.Millisecond {
		t.Errorf("after wrap: p95 %v", w.p95())
	}
	w.add(2*time.Millisecond, false) // evicts the oldest, 3ms
	w.add(2*time.Millisecond, false) // evicts 4ms
	w.add(2*time.Millisecond, false) // evicts 5ms
	if w.p95() != 2*time.Millisecond {
		t.Errorf("after evicting the slow ones: p95 %v, want 2ms", w.p95())
	}
}

func TestP95NearestRank(t *testing.T) {
	for _, tt := range []struct {
		n, want int // samples 1..n ms, want p95 in ms
	}{
		{1, 1}, {2, 2}, {19, 19}, {20, 19}, {21, 20}, {40, 38}, {100, 95}, {199, 190}, {200, 190},
	} {
		w := newLatencyWindow(200)
		for i := tt.n; i >= 1; i-- {
			w.add(time.Duration(i)*time.Millisecond, false)
		}
		if got := w.p95(); got != time.Duration(tt.want)*time.Millisecond {
			t.Errorf("n=%d: p95 %v, want %dms", tt.n, got, tt.want)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tedgeinfer\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n"
	got, err := parseVmRSS(strings.NewReader(status))
	if err != nil || got != 12345*1024 {
		t.Errorf("parseVmRSS = %d, %v; want %d", got, err, 12345*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tlots kB\n"} {
		if _, err := parseVmRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("parseVmRSS(%q): no error", bad)
		}
	}
	rss, err := readRSS()
	if err != nil || rss < 1<<20 {
		t.Errorf("readRSS = %d, %v", rss, err)
	}
}

func TestMsAndSeconds(t *testing.T) {
	if got := ms(1234567 * time.Nanosecond); got != 1.235 {
		t.Errorf("ms = %v", got)
	}
	if got := seconds(1500*time.Millisecond + 400*time.Microsecond); got != 1.5 {
		t.Errorf("seconds = %v", got)
	}
}
