package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestIntentRecordedBeforeEveryAction checks the controller's half of I9:
// every device action is preceded by its intent in the audit trail, and
// an intent that cannot be recorded stops the action (fail-closed: the
// rollout pauses; the device is not switched).
func TestIntentRecordedBeforeEveryAction(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.health.broken["gateway"] = "crash" // a rollback too
	var mu sync.Mutex
	intents := map[string]int{}
	ctl := h.controller()
	ctl.Audit = func(ctx context.Context, es ...Event) error {
		for _, e := range es {
			if e.Outcome == "intent" && e.Device != "" {
				mu.Lock()
				intents[e.Device]++
				mu.Unlock()
			}
		}
		return nil
	}
	names := map[string]string{}
	for _, d := range h.registry.devices {
		names[d.ID] = d.Name
	}
	var unrecorded []string
	h.cluster.beforeSwitch = func(id string) {
		mu.Lock()
		defer mu.Unlock()
		if intents[names[id]] == 0 {
			unrecorded = append(unrecorded, names[id])
		}
		intents[names[id]]-- // one intent per action
	}
	if _, err := ctl.Run(context.Background()); err != nil {
		t.Fatalf("run: %v", err)
	}
	if len(unrecorded) > 0 {
		t.Fatalf("devices switched without an intent in the audit trail: %v", unrecorded)
	}

	// The trail refuses every intent: nothing is switched, the rollout
	// pauses.
	h2 := newHarness(t, 12)
	h2.upgradeFrom("1.0.0")
	ctl2 := h2.controller()
	ctl2.Audit = func(ctx context.Context, es ...Event) error {
		for _, e := range es {
			if e.Outcome == "intent" {
				return errors.New("audit trail: Unexpected response code: 500")
			}
		}
		return nil
	}
	_, err := ctl2.Run(context.Background())
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("err = %v, want a pause", err)
	}
	if h2.cluster.switches > 0 {
		t.Fatalf("%d devices switched without their intent recorded", h2.cluster.switches)
	}
}
