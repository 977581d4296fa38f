package simfleet

import (
	"context"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

func TestRunRollout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, Config{Devices: 1000, Offline: 0.01, Fail: 0.01, Seed: 1})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	r := res.Rollout
	if r.Outcome != scheduler.OutcomeSucceeded {
		t.Fatalf("outcome %q, want succeeded; last: %s", r.Outcome, r.LastAction)
	}
	t.Logf("%+v", res.Tally)
	t.Logf("wall %s simulated %s peak heap %d MB store %+v fleet %+v", res.Wall, res.Simulated, res.PeakHeap>>20, res.Store, res.Fleet)
}
