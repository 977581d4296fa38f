package simfleet

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// SaveDevices is one all-or-nothing transaction: every record gets its
// index, a stale one writes nothing of the batch.
func TestStoreSaveDevices(t *testing.T) {
	ctx := context.Background()
	s := NewStore(NewClock(t0))
	var recs []*scheduler.DeviceRecord
	for i := range 5 {
		id := fmt.Sprintf("n%d", i)
		recs = append(recs, &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: id, Name: id}, State: scheduler.DevicePending})
	}
	if n, err := s.SaveDevices(ctx, "app", recs); err != nil || n != len(recs) {
		t.Fatalf("SaveDevices: %d, %v", n, err)
	}
	for _, d := range recs {
		if d.Index == 0 {
			t.Fatalf("record %s has no index", d.ID)
		}
	}
	stale := *recs[3]
	if err := s.SaveDevice(ctx, "app", recs[3]); err != nil {
		t.Fatal(err)
	}
	batch := []*scheduler.DeviceRecord{recs[0], &stale}
	before := recs[0].Index
	if n, err := s.SaveDevices(ctx, "app", batch); !errors.Is(err, scheduler.ErrConflict) || n != 0 || recs[0].Index != before {
		t.Fatalf("a batch with a stale record: %d written, %v, index %d (was %d)", n, err, recs[0].Index, before)
	}
	if st := s.Stats(); st.DeviceWrites != 6 || st.DeviceTxns != 2 || st.Conflicts != 1 {
		t.Fatalf("stats %+v, want 6 writes in 2 requests and 1 conflict", st)
	}
}
