package scheduler

import (
	"strings"
	"testing"
)

func TestWithLatestReason(t *testing.T) {
	stale := Verdict{Status: VerdictFail, Layer: 4, Confirm: true, Reason: `check "fleetplan L4 functional" is critical: http-json POST /infer: request failed: connection refused`}
	h := DeviceHealth{Online: true, Alloc: &AllocHealth{ID: "alloc-2", Status: "running"}}
	latest := DeviceSummary{AllocID: "alloc-2", Layers: map[string]string{"functional": "critical"}, Reasons: map[string]string{"functional": "http-json POST /infer: 200 in 412ms (max 250ms exceeded)"}}

	got := withLatestReason(stale, latest, h)
	if !strings.HasPrefix(got.Reason, stale.Reason) || !strings.Contains(got.Reason, "latest layer functional verdict: http-json POST /infer: 200 in 412ms (max 250ms exceeded)") {
		t.Errorf("reason %q: want the check's and the agent's latest", got.Reason)
	}
	if got.Status != VerdictFail || got.Layer != 4 {
		t.Errorf("verdict changed: %+v", got)
	}
	for name, s := range map[string]DeviceSummary{
		"another allocation":   {AllocID: "alloc-1", Layers: latest.Layers, Reasons: latest.Reasons},
		"the layer passes now": {AllocID: "alloc-2", Layers: map[string]string{"functional": "passing"}, Reasons: map[string]string{"functional": "ok"}},
		"no reason":            {AllocID: "alloc-2", Layers: map[string]string{"functional": "critical"}},
		"the same reason":      {AllocID: "alloc-2", Layers: latest.Layers, Reasons: map[string]string{"functional": "connection refused"}},
	} {
		if got := withLatestReason(stale, s, h); got.Reason != stale.Reason {
			t.Errorf("%s: reason %q, want it unchanged", name, got.Reason)
		}
	}
}
