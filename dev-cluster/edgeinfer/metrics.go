package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// latencyWindow holds the latency and outcome of the last size requests.
type latencyWindow struct {
	lat  []time.Duration
	fail []bool
	next int // slot the next sample goes to
	n    int // samples held, <= size
}

func newLatencyWindow(size int) latencyWindow {
	return latencyWindow{lat: make([]time.Duration, size), fail: make([]bool, size)}
}

func (w *latencyWindow) add(d time.Duration, failed bool) {
	w.lat[w.next] = d
	w.fail[w.next] = failed
	w.next = (w.next + 1) % len(w.lat)
	if w.n < len(w.lat) {
		w.n++
	}
}

func (w *latencyWindow) len() int { return w.n }

// p95 is the 95th percentile by the nearest-rank method: the smallest sample
// with at least 95 % of the samples at or below it, i.e. the
// ceil(0.95*n)-th smallest. 0 when empty.
func (w *latencyWindow) p95() time.Duration {
	if w.n == 0 {
		return 0
	}
	s := slices.Clone(w.lat[:w.n]) // the held samples are always the first n slots until the ring is full
	slices.Sort(s)
	rank := (95*w.n + 99) / 100 // ceil(0.95*n) in integers
	return s[rank-1]
}

func (w *latencyWindow) errorRate() float64 {
	if w.n == 0 {
		return 0
	}
	failed := 0
	for _, f := range w.fail[:w.n] {
		if f {
			failed++
		}
	}
	return float64(failed) / float64(w.n)
}

// readRSS returns the resident set size of this process from /proc.
func readRSS() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(bytes.NewReader(b))
}

// parseVmRSS reads the "VmRSS:  1234 kB" line of a /proc/<pid>/status file.
func parseVmRSS(r io.Reader) (uint64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("unexpected VmRSS line %q: %v", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no VmRSS line")
}
