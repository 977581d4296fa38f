package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// save persists the rollout, retrying transient failures for SaveRetry.
func (c *Controller) save(ctx context.Context, r *Rollout) error {
	r.UpdatedAt = c.Clock.Now()
	return c.retry(ctx, "saving the state of rollout "+r.App, func() error { return c.Store.SaveRollout(ctx, r) })
}

func (c *Controller) saveDevice(ctx context.Context, r *Rollout, rec *DeviceRecord) error {
	rec.UpdatedAt = c.Clock.Now()
	return c.retry(ctx, fmt.Sprintf("saving the state of device %s in rollout %s", rec.Name, r.App), func() error { return c.Store.SaveDevice(ctx, r.App, rec) })
}

// DeviceBatch is the number of device records the controller hands the
// store in one SaveDevices call: one Consul transaction holds 64
// operations, one of which checks the rollout's lock. The controller
// fences before each call, as before each single write.
const DeviceBatch = 63

// saveDevices persists device records in batches of DeviceBatch, each
// retried (from its first unwritten record) like a single write.
func (c *Controller) saveDevices(ctx context.Context, r *Rollout, recs []*DeviceRecord) error {
	now := c.Clock.Now()
	for _, rec := range recs {
		rec.UpdatedAt = now
	}
	for start := 0; start < len(recs); start += DeviceBatch {
		pending := recs[start:min(start+DeviceBatch, len(recs))]
		what := fmt.Sprintf("saving the state of %d devices (%s to %s) in rollout %s", len(pending), pending[0].Name, pending[len(pending)-1].Name, r.App)
		err := c.retry(ctx, what, func() error {
			n, err := c.Store.SaveDevices(ctx, r.App, pending)
			pending = pending[n:]
			if err == nil && len(pending) > 0 {
				err = fmt.Errorf("the store wrote %d of the records and reported no error", n)
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) retry(ctx context.Context, what string, f func() error) error {
	deadline := c.Clock.Now().Add(c.SaveRetry)
	wait := 250 * time.Millisecond
	for {
		if err := c.fenced(what); err != nil {
			return err
		}
		err := f()
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrLockLost) || ctx.Err() != nil || c.Clock.Now().After(deadline) {
			return fmt.Errorf("%s: %w", what, err)
		}
		c.Logger.Named("controller").Warn("write failed; retrying", "what", what, "error", err, "wait", wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-c.Clock.After(wait):
		}
		if wait *= 2; wait > 5*time.Second {
			wait = 5 * time.Second
		}
	}
}

// ErrLockLost is returned when the controller no longer holds its rollout's
// lock: it stops acting at once (I8: one actor).
var ErrLockLost = errors.New("the rollout's lock was lost")

// fenced asks Fence, before an action or a write, whether this controller
// still holds the lock.
func (c *Controller) fenced(what string) error {
	if c.Fence == nil {
		return nil
	}
	if err := c.Fence(); err != nil {
		return fmt.Errorf("%s: not done: %w", what, errors.Join(ErrLockLost, err))
	}
	return nil
}
