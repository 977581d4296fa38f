package scheduler

import (
	"strings"
	"testing"
	"time"
)

func TestAnalyzeFailures(t *testing.T) {
	dev := func(name, class string, st DeviceState, layer int) *DeviceRecord {
		return &DeviceRecord{DeviceRef: DeviceRef{ID: name, Name: name, Class: class}, State: st, Layer: layer, Reason: "boom"}
	}
	tests := []struct {
		name string
		recs []*DeviceRecord
		kind AnalysisKind
		want string
	}{
		{"all fail", []*DeviceRecord{dev("j1", "jetson", DeviceFailed, 3), dev("r1", "rpi", DeviceFailed, 3)}, AnalysisArtifact, "artifact issue: every device that reached a verdict failed (2 of 2) at layer 3"},
		{"one class", []*DeviceRecord{dev("j1", "jetson", DeviceFailed, 4), dev("j2", "jetson", DeviceFailed, 4), dev("r1", "rpi", DeviceHealthy, 0), dev("g1", "gateway", DeviceHealthy, 0)}, AnalysisCompatibility, "compatibility issue: failures concentrated in node class jetson (2 of 2 failed"},
		{"scattered", []*DeviceRecord{dev("j1", "jetson", DeviceFailed, 1), dev("j2", "jetson", DeviceHealthy, 0), dev("r1", "rpi", DeviceFailed, 2), dev("r2", "rpi", DeviceHealthy, 0)}, AnalysisInfrastructure, "infrastructure issue: 2 scattered failures across classes jetson, rpi"},
		// make test, TestIntegrationFaults/unhealthy: the release fails its
		// application check after 2 s; one canary device had not met the
		// fault yet when the other two failed.
		{"most at one application layer", []*DeviceRecord{dev("g1", "gateway", DeviceFailed, 3), dev("j1", "jetson", DeviceFailed, 3), dev("r1", "rpi", DeviceHealthy, 0)}, AnalysisArtifact, "artifact issue: most devices that reached a verdict failed (2 of 3) at layer 3 in classes gateway, jetson"},
		{"half at one application layer", []*DeviceRecord{dev("g1", "gateway", DeviceFailed, 3), dev("j1", "jetson", DeviceFailed, 3), dev("r1", "rpi", DeviceHealthy, 0), dev("r2", "rpi", DeviceHealthy, 0)}, AnalysisInfrastructure, "infrastructure issue: 2 scattered failures across classes gateway, jetson"},
		{"single failure", []*DeviceRecord{dev("g1", "gateway", DeviceFailed, 3), dev("j1", "jetson", DeviceHealthy, 0), dev("r1", "rpi", DeviceHealthy, 0)}, AnalysisInconclusive, "inconclusive: a single device failed at layer 3 (g1: boom), 2 other(s) were healthy"},
		{"none", []*DeviceRecord{dev("j1", "jetson", DeviceHealthy, 0)}, AnalysisNone, "no device failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := AnalyzeFailures(tt.recs)
			if a.Kind != tt.kind {
				t.Errorf("kind %q, want %q", a.Kind, tt.kind)
			}
			if got := a.String(); !strings.Contains(got, tt.want) {
				t.Fatalf("got %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

func TestTallyDevices(t *testing.T) {
	at := time.Unix(1000, 0)
	recs := []*DeviceRecord{
		{State: DevicePending},
		{State: DeviceSwitching},
		{State: DeviceVerifying, SwitchedAt: at},
		{State: DeviceHealthy, SwitchedAt: at},
		{State: DeviceCaughtUp, SwitchedAt: at},
		{State: DeviceFailed, Failed: true, Layer: 3},
		{State: DeviceQuarantined, Failed: true},
		// Rolled back after its switch failed (no layer: the switch, not a
		// check, failed): a failure, read from the flag, not the reason.
		{State: DeviceRolledBack, Failed: true, Reason: "anything"},
		// Rolled back after a failing verdict recorded before the flag.
		{State: DeviceRolledBack, Layer: 4},
		// Rolled back healthy, after a switch.
		{State: DeviceRollingBack, SwitchedAt: at},
		// Rolled back, never switched.
		{State: DeviceRolledBack, Reason: "switch failed: but restored"},
		{State: DeviceSkippedOffline},
	}
	got := TallyDevices(recs)
	want := Tally{Total: 12, Pending: 1, Switching: 1, Verifying: 1, Healthy: 2, FailedNow: 1, Quarantined: 1,
		RollingBack: 1, RolledBack: 3, Offline: 1, Attempted: 8, Failed: 4}
	if got != want {
		t.Fatalf("tally\n got %+v\nwant %+v", got, want)
	}
	if sum := got.Pending + got.Switching + got.Verifying + got.Healthy + got.FailedNow + got.Quarantined + got.RollingBack + got.RolledBack + got.Offline; sum != got.Total {
		t.Errorf("state buckets add up to %d, not %d", sum, got.Total)
	}
	if p := got.FailurePercent(); p != 50 {
		t.Errorf("failure percent %v, want 50", p)
	}
}
