package simfleet

import (
	"container/heap"
	"sync"
	"time"
)

// Clock is simulated time for a whole run, so that soaks, health deadlines
// and device delays take no real time.
//
// Those who drive the run move it forward: After(d) (the controller's
// waits between samples, its retries) and Advance (a device switch taking
// its share of the switch latency) advance the clock by d at once. Those
// who only wait for time to pass (a blocking query's wait time, a device
// whose application starts after a delay) register a timer with Timer or
// At: it fires when a driver moves the clock past its deadline, in
// deadline order, the clock standing at the deadline while it fires.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers timerHeap
	seq    uint64
	fired  uint64
}

// NewClock starts simulated time at start.
func NewClock(start time.Time) *Clock {
	return &Clock{now: start}
}

// Now implements scheduler.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After implements scheduler.Clock: it advances the clock by d and returns
// a channel that already holds the new time.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	now := c.Advance(d)
	ch := make(chan time.Time, 1)
	ch <- now
	return ch
}

// Advance moves the clock forward by d (not below what another driver
// reached meanwhile), firing the timers due, and returns the new time.
func (c *Clock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	target := c.now.Add(max(d, 0))
	for len(c.timers) > 0 && !c.timers[0].at.After(target) {
		t := heap.Pop(&c.timers).(*timer)
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.fired++
		c.mu.Unlock()
		t.fire()
		c.mu.Lock()
	}
	if target.After(c.now) {
		c.now = target
	}
	now := c.now
	c.mu.Unlock()
	return now
}

// Timer returns a channel closed once the clock reaches now+d, and a stop
// function that drops the timer (a blocking query answered before its wait
// time ended).
func (c *Clock) Timer(d time.Duration) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	t := c.add(c.Now().Add(d), func() { close(ch) })
	return ch, func() { c.remove(t) }
}

// At runs f (on the goroutine that advances the clock) once the clock
// reaches at; f must not block on the clock.
func (c *Clock) At(at time.Time, f func()) {
	c.add(at, f)
}

// Pending is the number of timers not fired yet.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *Clock) add(at time.Time, f func()) *timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &timer{at: at, seq: c.seq, fire: f, pos: -1}
	if !at.After(c.now) {
		// Already due: fire at the next advance, in order.
		t.at = c.now
	}
	heap.Push(&c.timers, t)
	return t
}

func (c *Clock) remove(t *timer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.pos >= 0 && t.pos < len(c.timers) && c.timers[t.pos] == t {
		heap.Remove(&c.timers, t.pos)
	}
}

type timer struct {
	at   time.Time
	seq  uint64
	fire func()
	pos  int
}

// timerHeap orders timers by deadline, then by creation.
type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *timerHeap) Push(x any) {
	t := x.(*timer)
	t.pos = len(*h)
	*h = append(*h, t)
}
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	t.pos = -1
	*h = old[:len(old)-1]
	return t
}
