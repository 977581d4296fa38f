package scheduler

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ControlPlaneError is a cluster action or health read that kept failing
// for the control plane (ErrControlPlane) past Controller.ControlPlaneRetry.
// The controller pauses the rollout on it (a halt with the reason); it is
// never a device failure.
type ControlPlaneError struct {
	// What was being done, to which device.
	What string
	Err  error
}

func (e *ControlPlaneError) Error() string {
	return fmt.Sprintf("%s: the control plane kept failing: %v", e.What, e.Err)
}

func (e *ControlPlaneError) Unwrap() error { return e.Err }

// clusterCall runs a cluster action, retrying it with a capped backoff
// while it fails for the control plane, for at most ControlPlaneRetry;
// then it returns a *ControlPlaneError. Other errors return at once. The
// actions it runs are idempotent (a device switch is).
func (c *Controller) clusterCall(ctx context.Context, what string, f func() error) error {
	deadline := c.Clock.Now().Add(c.ControlPlaneRetry)
	wait := 500 * time.Millisecond
	for {
		if err := c.fenced(what); err != nil {
			return err
		}
		err := f()
		if err == nil || !errors.Is(err, ErrControlPlane) || ctx.Err() != nil {
			return err
		}
		if !c.Clock.Now().Before(deadline) {
			return &ControlPlaneError{What: what, Err: err}
		}
		c.Logger.Named("controller").Warn("control plane error; retrying", "what", what, "error", err, "wait", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.Clock.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
