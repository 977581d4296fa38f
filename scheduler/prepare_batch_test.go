package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// storedRecords returns how many device records of app the store holds,
// and checks each is at the index its record carries.
func storedRecords(t *testing.T, s *memStore, app string) int {
	t.Helper()
	r, err := s.Load(context.Background(), app)
	if err != nil || r == nil {
		t.Fatalf("loading %s: %v", app, err)
	}
	for id, d := range r.Devices {
		if d.ID != id || d.Index != s.devIdx[app][id] {
			t.Fatalf("record %s: %+v at index %d", id, d.DeviceRef, s.devIdx[app][id])
		}
	}
	return len(r.Devices)
}

// PREPARE writes the device records of a new run in batches of at most
// DeviceBatch, each after a fence, instead of one write per device.
func TestPrepareWritesRecordsInBatches(t *testing.T) {
	const n = 150
	h := newHarness(t, n)
	ctl := h.controller()
	var mu sync.Mutex
	var fencedAt []int // batches written when each fence ran
	ctl.Fence = func() error {
		mu.Lock()
		defer mu.Unlock()
		h.store.mu.Lock()
		fencedAt = append(fencedAt, len(h.store.batches))
		h.store.mu.Unlock()
		return nil
	}
	r, err := ctl.Run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
	}
	// PREPARE's batches come first (the gates' verdicts are batched
	// too, later).
	want := (n + DeviceBatch - 1) / DeviceBatch
	if len(h.store.batches) < want {
		t.Fatalf("batches %v, want at least %d", h.store.batches, want)
	}
	batches := h.store.batches[:want]
	total := 0
	for _, b := range batches {
		if b < 1 || b > DeviceBatch {
			t.Errorf("a batch of %d records, want 1 to %d", b, DeviceBatch)
		}
		total += b
	}
	if total != n {
		t.Fatalf("batches %v (%d records), want %d batches of the %d records", batches, total, want, n)
	}
	// A fence before every batch: one that ran when i batches were
	// written, for every i below their number.
	fenced := map[int]bool{}
	for _, at := range fencedAt {
		fenced[at] = true
	}
	for i := range batches {
		if !fenced[i] {
			t.Errorf("batch %d was written without a fence before it (fences at %v)", i, fencedAt)
		}
	}
	if got := storedRecords(t, h.store, "edgeinfer"); got != n {
		t.Fatalf("%d records stored, want %d", got, n)
	}
}

// A batch that fails part-way (a store whose transactions are smaller than
// the batch) is retried from its first unwritten record: every record is
// written once, none conflicts with itself.
func TestPrepareBatchRetriedFromUnwritten(t *testing.T) {
	const n = 100
	h := newHarness(t, n)
	h.store.batchSize = 20
	h.store.failBatches = 1
	r, err := h.run(context.Background())
	if err != nil || r.Outcome != OutcomeSucceeded {
		t.Fatalf("run: %v (outcome %q)", err, r.Outcome)
	}
	// 63 records: 20 written, then the failure; 43 again; then 37 (the
	// gates' batches follow).
	want := []int{DeviceBatch, DeviceBatch - 20, n - DeviceBatch}
	if len(h.store.batches) < len(want) || h.store.batches[0] != want[0] || h.store.batches[1] != want[1] || h.store.batches[2] != want[2] {
		t.Fatalf("SaveDevices calls %v, want %v", h.store.batches, want)
	}
	if got := storedRecords(t, h.store, "edgeinfer"); got != n {
		t.Fatalf("%d records stored, want %d", got, n)
	}
}

// A lost check-and-set is not retried: PREPARE stops with ErrConflict.
func TestPrepareBatchConflictStops(t *testing.T) {
	h := newHarness(t, 10)
	// Another writer created a record of the run first.
	dev := h.registry.devices[3]
	if err := h.store.SaveDevice(context.Background(), "edgeinfer", &DeviceRecord{DeviceRef: DeviceRef{ID: dev.ID, Name: dev.Name}}); err != nil {
		t.Fatal(err)
	}
	_, err := h.run(context.Background())
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("run: %v, want a conflict", err)
	}
	if len(h.store.batches) != 1 {
		t.Fatalf("SaveDevices calls %v, want one (a conflict is not retried)", h.store.batches)
	}
	if got := len(h.store.devices["edgeinfer"]); got != 1 {
		t.Fatalf("%d records stored, want only the other writer's: a batch is written whole or not at all", got)
	}
}
