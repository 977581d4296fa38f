//go:build integration

package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// TestIntegrationSaveDevicesBatched writes 300 device records in batched
// transactions bound to the rollout's lock, reads them back, writes them
// again at their new indexes, loses a check-and-set part-way and finally
// the lock.
func TestIntegrationSaveDevicesBatched(t *testing.T) {
	s, cc := newTestStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, release, err := s.Lock(ctx, "app", "batch-writer")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	recs := make([]*scheduler.DeviceRecord, 300)
	for i := range recs {
		recs[i] = &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: fmt.Sprintf("node-%03d", i), Name: fmt.Sprintf("dev-%d", i), Class: "jetson"},
			Stage: i % 4, State: scheduler.DevicePending}
	}
	if n, err := s.SaveDevices(ctx, "app", recs); err != nil || n != len(recs) {
		t.Fatalf("SaveDevices: %d of %d written, %v", n, len(recs), err)
	}
	if err := s.SaveRollout(ctx, testRun("app")); err != nil {
		t.Fatal(err)
	}
	check := func(state scheduler.DeviceState) {
		t.Helper()
		r, err := s.Load(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Devices) != len(recs) {
			t.Fatalf("read back %d records, want %d", len(r.Devices), len(recs))
		}
		for _, d := range recs {
			got := r.Devices[d.ID]
			if got == nil || got.Index != d.Index || got.Name != d.Name || got.Stage != d.Stage || got.State != state {
				t.Fatalf("record %s read back as %+v, want index %d, stage %d, state %s", d.ID, got, d.Index, d.Stage, state)
			}
		}
	}
	check(scheduler.DevicePending)

	for _, d := range recs {
		d.State = scheduler.DeviceSwitching
	}
	if n, err := s.SaveDevices(ctx, "app", recs); err != nil || n != len(recs) {
		t.Fatalf("writing again at the new indexes: %d written, %v", n, err)
	}
	check(scheduler.DeviceSwitching)

	// Another writer moves record 100: the transaction holding it (the
	// second) is not written, the first is.
	other := *recs[100]
	other.Reason = "written by another controller" // Consul keeps the index of an unchanged value
	if err := s.SaveDevice(ctx, "app", &other); err != nil {
		t.Fatal(err)
	}
	before := make([]uint64, len(recs))
	for i, d := range recs {
		before[i] = d.Index
		d.State = scheduler.DeviceHealthy
	}
	n, err := s.SaveDevices(ctx, "app", recs)
	if !errors.Is(err, scheduler.ErrConflict) || n != MaxTxnOps-1 {
		t.Fatalf("a stale record in the second transaction: %d written, %v; want %d and a conflict", n, err, MaxTxnOps-1)
	}
	for i, d := range recs {
		if moved := d.Index != before[i]; moved != (i < n) {
			t.Fatalf("record %d: index %d (was %d) after %d were written", i, d.Index, before[i], n)
		}
	}

	// The lock is lost: nothing is written.
	_, _, err = New(cc, Options{Prefix: s.Prefix()}).Lock(ctx, "app", "other")
	held, ok := IsLockHeld(err)
	if !ok {
		t.Fatalf("second Lock: %v", err)
	}
	if _, err := cc.Session().Destroy(held.Session, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SaveDevices(ctx, "app", recs[n:]); !errors.Is(err, scheduler.ErrLockLost) || n != 0 {
		t.Fatalf("after the lock was lost: %d written, %v; want ErrLockLost", n, err)
	}
}
