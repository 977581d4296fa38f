package scheduler

import (
	"strings"
	"testing"
)

// The checklist names the devices it finds unhealthy by their plan names
// (an ID when the plan does not list the device), one lookup each.
func TestChecklistNamesDevicesFromThePlan(t *testing.T) {
	plan := &Plan{Stages: []PlannedStage{
		{Name: "canary", Devices: []PlannedDevice{{ID: "id-1", Name: "edge-one", Class: "c"}}},
		{Name: "wave 1", Devices: []PlannedDevice{{ID: "id-2", Name: "edge-two", Class: "c"}, {ID: "id-3", Name: "edge-three", Class: "c"}}},
	}}
	running := &AllocHealth{ID: "a", Status: "running"}
	in := PreflightInput{
		Policy: &Policy{Name: "app"},
		Plan:   plan,
		Active: SlotBlue,
		Health: map[string]DeviceHealth{
			"id-1":  {Online: true, Alloc: running, Checks: []CheckResult{{Name: "svc", Layer: 3, Status: "passing"}}},
			"id-2":  {Online: true},
			"id-3":  {Online: true, Alloc: running, Checks: []CheckResult{{Name: "svc", Layer: 3, Status: "critical", Output: "down"}}},
			"ghost": {Online: true},
		},
	}
	var detail string
	for _, it := range BuildChecklist(in) {
		if it.Name == CheckOldHealthy {
			detail = it.Detail
		}
	}
	for _, want := range []string{"edge-two (no running allocation", "edge-three (svc critical)", "ghost (no running allocation"} {
		if !strings.Contains(detail, want) {
			t.Errorf("old-slot item %q does not name %q", detail, want)
		}
	}
	if strings.Contains(detail, "edge-one") || strings.Contains(detail, "id-2") {
		t.Errorf("old-slot item %q names a healthy device or an ID the plan names", detail)
	}
}
