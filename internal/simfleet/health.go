package simfleet

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Watcher is the health source of a simulated run (scheduler.HealthSource):
// one goroutine follows the fleet with one blocking query (Fleet.Changes)
// and keeps the latest view of every device, and Health answers from it,
// once the view has caught up with the fleet's index at the time of the
// call (a consistent read). Whatever the number of devices or of switches
// in flight, it holds one long-poll.
type Watcher struct {
	fleet *Fleet
	wait  time.Duration

	mu      sync.Mutex
	views   []DeviceView // by device index
	index   uint64
	applied chan struct{} // closed (and replaced) when index moves
	err     error

	calls atomic.Int64
}

// Watch starts following the fleet until ctx ends; wait is the blocking
// query's wait time.
func Watch(ctx context.Context, f *Fleet, wait time.Duration) *Watcher {
	w := &Watcher{fleet: f, wait: wait, applied: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *Watcher) run(ctx context.Context) {
	var idx uint64
	for ctx.Err() == nil {
		views, next, err := w.fleet.Changes(ctx, idx, w.wait)
		if err != nil {
			if ctx.Err() == nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
			}
			return
		}
		if next == idx {
			continue // the wait time ended without news
		}
		w.mu.Lock()
		if idx == 0 {
			w.views = views
		} else {
			for _, v := range views {
				w.views[v.Dev] = v
			}
		}
		w.index = next
		close(w.applied)
		w.applied = make(chan struct{})
		w.mu.Unlock()
		idx = next
	}
}

// Calls is how many times Health was asked.
func (w *Watcher) Calls() int64 { return w.calls.Load() }

// Shared check results: the gate only reads them.
var (
	checksPending = []scheduler.CheckResult{
		{Name: "serfHealth", Layer: 1, Status: "passing", Output: "Agent alive and reachable"},
		{Name: "service: app check", Layer: 3, Status: "critical"},
	}
	checksPassing = []scheduler.CheckResult{
		{Name: "serfHealth", Layer: 1, Status: "passing", Output: "Agent alive and reachable"},
		{Name: "service: app check", Layer: 3, Status: "passing", Output: "HTTP GET /health: 200 OK"},
	}
)

// Health implements scheduler.HealthSource: the candidate slot's
// allocation and check on each device, as of now.
func (w *Watcher) Health(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.DeviceHealth, error) {
	w.calls.Add(1)
	target := w.fleet.Index()
	for {
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return nil, err
		}
		if w.index >= target {
			break
		}
		applied := w.applied
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-applied:
		}
	}
	defer w.mu.Unlock()
	s := slotIndex(r.Candidate)
	out := make(map[string]scheduler.DeviceHealth, len(devices))
	for _, ref := range devices {
		i, ok := w.fleet.byID[ref.ID] // never written after NewFleet
		if !ok {
			out[ref.ID] = scheduler.DeviceHealth{}
			continue
		}
		v := &w.views[i]
		h := scheduler.DeviceHealth{Online: v.Online}
		if !v.Online {
			out[ref.ID] = h
			continue
		}
		a := v.Slots[s]
		if a.status != "" {
			h.Alloc = &scheduler.AllocHealth{ID: a.id, Status: a.status, Version: a.version}
		}
		switch {
		case a.status == "running" && a.check == "passing":
			h.Checks = checksPassing
			h.Version = a.version
		case a.status == "running" || a.status == "pending":
			if a.output == "" {
				h.Checks = checksPending
			} else {
				h.Checks = []scheduler.CheckResult{checksPassing[0], {Name: "service: app check", Layer: 3, Status: a.check, Output: a.output}}
			}
			if a.status == "running" {
				h.Version = a.version
			}
		}
		out[ref.ID] = h
	}
	return out, nil
}
