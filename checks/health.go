package checks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Health reports the candidate slot's health on each device, keyed by
// device ID. It waits (bounded by ctx) for the first response of every
// watch involved, so that a cold cache never reads as "no allocation", and
// returns an error matching ErrStale while one of them has been failing for
// longer than StaleAfter.
func (w *Watcher) Health(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.DeviceHealth, error) {
	if r == nil || r.App == "" || r.Candidate == "" {
		return nil, errors.New("health: the rollout names no application or candidate slot")
	}
	jobID := contract.SlotJobID(r.App, r.Candidate)
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return nil, ErrStopped
	}
	w.startGlobalLocked()
	jw := w.watchJobLocked(jobID, r.Candidate)
	w.mu.Unlock()

	if err := w.await(ctx, jw); err != nil {
		return nil, err
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	return w.healthLocked(jw, devices), nil
}

// healthLocked is the devices' health from the caches, keyed by device ID
// (name when it has none). A long list is answered from its view
// (healthView) when it was asked before.
func (w *Watcher) healthLocked(jw *jobWatch, devices []scheduler.DeviceRef) map[string]scheduler.DeviceHealth {
	if w.viewMin > 0 && len(devices) >= w.viewMin {
		if out, ok := w.viewHealthLocked(jw, devices); ok {
			return out
		}
	}
	out := make(map[string]scheduler.DeviceHealth, len(devices))
	for _, d := range devices {
		key := deviceKey(d)
		out[key] = w.deviceHealthLocked(jw, d, key)
	}
	return out
}

// awaitPoll is how often await re-reads the loops' states while waiting.
const awaitPoll = 100 * time.Millisecond

// await waits until every watch the job depends on has answered once and
// the job's versions cover its allocations.
func (w *Watcher) await(ctx context.Context, jw *jobWatch) error {
	var behindSince time.Time
	for {
		wait, waiting, err := w.pending(jw, &behindSince)
		if err != nil {
			return err
		}
		if wait == nil {
			return nil
		}
		t := time.NewTimer(awaitPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("health of %s: waiting for %s: %w", jw.id, waiting, ctx.Err())
		case <-w.ctx.Done():
			t.Stop()
			return ErrStopped
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}

// pending returns a channel to wait on when a watch has not answered yet
// (nil when all did), or the stale error.
func (w *Watcher) pending(jw *jobWatch, behindSince *time.Time) (<-chan struct{}, string, error) {
	w.mu.Lock()
	var loops []watch
	for _, l := range []watch{w.nodesW, w.loopOf(w.allocsW), w.loopOf(w.checksW)} {
		if l != nil {
			loops = append(loops, l)
		}
	}
	behind := false
	if jw.view.Found {
		for _, as := range jw.allocs {
			for _, a := range as {
				if a.JobVersion > jw.view.Latest && !jw.view.leftover(a) {
					behind = true
				}
			}
		}
	}
	w.mu.Unlock()

	now := w.clk.Now()
	var (
		wait    <-chan struct{}
		waiting string
	)
	for _, l := range loops {
		st := l.State()
		if !st.FailingSince.IsZero() && now.Sub(st.FailingSince) >= w.cfg.StaleAfter {
			return nil, "", &StaleError{Watch: st.Name, Since: st.FailingSince, Err: st.LastErr}
		}
		select {
		case <-st.Ready:
		default:
			if wait == nil {
				wait, waiting = st.Ready, "the first answer of watch "+st.Name
			}
		}
	}
	if wait != nil {
		return wait, waiting, nil
	}
	if behind {
		// The allocations name a job version the job read did not see
		// yet: the next answer reads it again.
		if behindSince.IsZero() {
			*behindSince = now
		} else if now.Sub(*behindSince) >= w.cfg.StaleAfter {
			return nil, "", &StaleError{Watch: "nomad-job " + jw.id, Since: *behindSince,
				Err: errors.New("allocations run a job version the job read has not seen")}
		}
		never := make(chan struct{})
		return never, "the versions of job " + jw.id, nil
	}
	return nil, "", nil
}

// Baseline reports the active slot's measurements on each device (the
// pre-switch baseline), from the same caches: it implements
// scheduler.BaselineSource.
func (w *Watcher) Baseline(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]*scheduler.Metrics, error) {
	if r == nil || r.Active == "" {
		return map[string]*scheduler.Metrics{}, nil
	}
	active := *r
	active.Candidate = r.Active
	hs, err := w.Health(ctx, &active, devices)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*scheduler.Metrics, len(hs))
	for id, h := range hs {
		if h.Metrics != nil {
			out[id] = h.Metrics
		}
	}
	return out, nil
}
