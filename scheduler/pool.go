package scheduler

import (
	"context"
	"sync"
)

// forEach runs f on each device, at most max_parallel at a time, and
// returns the first error once every started f has finished. It starts no
// new device once ctx ends or stop (when not nil) says so; devices not
// started keep their state and are picked up again by the caller.
func (c *Controller) forEach(ctx context.Context, recs []*DeviceRecord, stop func() bool, f func(*DeviceRecord) error) error {
	sem := make(chan struct{}, max(c.Policy.MaxParallel, 1))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, rec := range recs {
		if stop != nil && stop() {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(rec *DeviceRecord) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(rec); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(rec)
	}
	wg.Wait()
	return firstErr
}
