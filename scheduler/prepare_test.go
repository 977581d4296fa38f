package scheduler

import (
	"context"
	"strings"
	"testing"
)

// TestCandidateNeverPlacedUngated checks invariant I1 (defect 1): after an
// a-b rollout left half the fleet on the colour that is now the
// candidate's, registering the next candidate places it on no device (they
// are put back on the active slot first, or fenced when offline), and a
// rejected candidate job is stopped after its rollback.
func TestCandidateNeverPlacedUngated(t *testing.T) {
	h := newHarness(t, 12)
	h.policy.Release.Version = "3.0.0"
	// The a-b run of 2.0.0 (candidate green) was confirmed; its untouched
	// share still runs 1.0.0 on blue, the next candidate's colour.
	h.store.active["edgeinfer"] = &ActiveSlot{Slot: SlotGreen, Version: "2.0.0", Index: 1}
	var stale []Device
	for i, d := range h.registry.devices {
		if i%2 == 0 {
			h.cluster.slots[d.ID] = SlotGreen
		} else {
			h.cluster.slots[d.ID] = SlotBlue
			stale = append(stale, d)
		}
	}
	offline := stale[0] // cannot be reconciled: fenced
	h.cluster.offline[offline.ID] = true
	h.health.offline[offline.ID] = true
	h.health.broken["*"] = "crash"

	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(h.cluster.ungated) > 0 {
		t.Fatalf("the candidate job was placed ungated on %v when it was registered", h.cluster.ungated)
	}
	if r.Outcome != OutcomeRolledBack {
		t.Fatalf("outcome %q, want the crashing canary rolled back", r.Outcome)
	}
	if n := len(h.eventsMatching("reconcile", "ok")); n != len(stale)-1 {
		t.Errorf("%d devices reconciled, want %d", n, len(stale)-1)
	}
	if len(h.cluster.fenced) == 0 || h.cluster.fenced[0].ID != offline.ID {
		t.Errorf("fenced %v, want the offline stale device %s", h.cluster.fenced, offline.Name)
	}
	excluded := false
	for _, e := range r.Excluded {
		if e.ID == offline.ID && strings.Contains(e.Reason, "candidate") {
			excluded = true
		}
	}
	if !excluded {
		t.Errorf("the fenced device is not excluded with its reason: %+v", r.Excluded)
	}
	for _, d := range h.registry.devices {
		if d.ID == offline.ID {
			continue
		}
		if got := h.cluster.slot(d.ID); got != SlotGreen {
			t.Errorf("device %s ends on slot %q, want the active green", d.Name, got)
		}
	}
	if len(h.cluster.retired) != 1 || h.cluster.retired[0] != "edgeinfer-blue" {
		t.Errorf("retired candidate jobs %v, want the rejected edgeinfer-blue", h.cluster.retired)
	}
}
