package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// The fence runs before each Nomad write of a switch, including the stop
// of the old slot seconds after the metadata: a lock lost in between stops
// the switch before it stops anything.
func TestSwitchFencedBetweenSteps(t *testing.T) {
	f, n := newFake(t)
	f.syncDelay = 100 * time.Millisecond
	f.allocs = []*api.Allocation{{ID: "blue-run", JobID: "edgeinfer-blue", DesiredStatus: "run", ClientStatus: "running"}}
	var calls atomic.Int32
	n.Fence = func() error {
		// The metadata passes; the lock is lost before the stop.
		if calls.Add(1) > 1 {
			return fmt.Errorf("%w: test: the session is gone", scheduler.ErrLockLost)
		}
		return nil
	}
	err := n.SwitchDevice(context.Background(), fakeDev, "blue", "green")
	if !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("switch with the lock lost after its metadata: %v, want ErrLockLost", err)
	}
	if errors.Is(err, scheduler.ErrControlPlane) {
		t.Errorf("a lost lock is reported as a control-plane error: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.applied {
		t.Error("the metadata was not applied although the fence passed then")
	}
	if len(f.stopped) != 0 {
		t.Errorf("allocations stopped after the fence failed: %v", f.stopped)
	}
}

// A fence that fails first: no write at all.
func TestSwitchFencedBeforeMetadata(t *testing.T) {
	f, n := newFake(t)
	n.Fence = func() error { return fmt.Errorf("%w: test", scheduler.ErrLockLost) }
	if err := n.SwitchDevice(context.Background(), fakeDev, "blue", "green"); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("switch: %v, want ErrLockLost", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applied {
		t.Error("the metadata was applied although the fence failed")
	}
	r := &scheduler.Rollout{App: "edgeinfer", ID: "r1", Version: "2.0.0", Active: "blue", Candidate: "green"}
	if err := n.RetireCandidate(context.Background(), r); !errors.Is(err, scheduler.ErrLockLost) {
		t.Errorf("RetireCandidate: %v, want ErrLockLost", err)
	}
}
