package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/hashicorp/go-hclog"
)

// controlState holds the operators' requests (approval, pause, rollback) as
// a value: one goroutine follows them with blocking queries and the
// controller reads the latest with current(); changed is signalled after
// each change, so waits wake at once.
type controlState struct {
	mu       sync.Mutex
	controls Controls
	changed  chan struct{}
}

func (s *controlState) current() Controls {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.controls
}

func (s *controlState) set(ctl Controls) {
	s.mu.Lock()
	s.controls = ctl
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// wake is the channel signalled when the requests change (never nil after
// reset, so a select on it blocks instead of panicking).
func (s *controlState) wake() <-chan struct{} { return s.changed }

func (s *controlState) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.controls = Controls{}
	s.changed = make(chan struct{}, 1)
}

// followControls reads the operators' requests once, then follows them
// until the returned stop is called.
func (c *Controller) followControls(ctx context.Context, log hclog.Logger) (stop func(), err error) {
	c.controls.reset()
	ctl, idx, err := c.Store.Controls(ctx, c.Policy.Name, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("reading operator requests of %q: %w", c.Policy.Name, err)
	}
	c.controls.set(ctl)
	cctx, cancel := context.WithCancel(ctx)
	go c.watchControls(cctx, log, idx)
	return cancel, nil
}

// watchControls follows the operators' requests. The store's Controls is a
// blocking query; this loop only keeps the last index and backs off when
// the store fails.
func (c *Controller) watchControls(ctx context.Context, log hclog.Logger, idx uint64) {
	failures := 0
	for ctx.Err() == nil {
		ctl, next, err := c.Store.Controls(ctx, c.Policy.Name, idx, 30*time.Second)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			wait := blocking.Backoff(failures, time.Second, 30*time.Second)
			log.Warn("reading operator requests failed; retrying", "error", err, "wait", wait)
			select {
			case <-ctx.Done():
				return
			case <-c.Clock.After(wait):
			}
			continue
		}
		failures = 0
		if next < idx {
			next = 0
		}
		changed := next != idx
		idx = next
		if changed {
			c.controls.set(ctl)
		}
	}
}

// waitUnpaused blocks while an operator's pause is in effect.
func (c *Controller) waitUnpaused(ctx context.Context, r *Rollout) error {
	announced := false
	for {
		ctl := c.controls.current()
		if ctl.Rollback != nil {
			return c.manualRollback(ctx, r, ctl.Rollback)
		}
		if ctl.Pause == nil {
			if r.Paused {
				r.Paused = false
				c.decide(r, DecisionResumed, "the rollout was resumed", nil)
				return c.save(ctx, r)
			}
			return nil
		}
		if !announced {
			announced = true
			r.Paused = true
			c.decide(r, DecisionPaused, fmt.Sprintf("paused by %s", ctl.Pause.Actor), nil)
			if err := c.save(ctx, r); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.controls.wake():
		}
	}
}
