package scheduler

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestChecklistStopsWithoutTheAgent checks invariant I3 (defect 3): with
// the device agent not installed, a policy with a functional layer stops
// at the pre-flight checklist, before anything is registered or switched.
func TestChecklistStopsWithoutTheAgent(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.policy.Health.Functional = &Functional{Probe: "http-json", MaxLatency: 250 * time.Millisecond}
	h.health.noAgent = map[string]bool{}
	for _, d := range h.registry.devices {
		h.health.noAgent[d.ID] = true
	}
	r, err := h.run(context.Background())
	var he *HaltError
	if !errors.As(err, &he) || !strings.Contains(he.Halt.Reason, CheckAgent) || he.Halt.Remedy != RemedyResume || !strings.Contains(he.Halt.Fix, "install the device agent") {
		t.Fatalf("err = %v, want a halt at the checklist item %q with how to fix it", err, CheckAgent)
	}
	if len(h.cluster.prepared) > 0 || len(h.eventsMatching("switch", "")) > 0 {
		t.Fatalf("the candidate was registered (%v) or devices switched despite the checklist", h.cluster.prepared)
	}
	var pre *Decision
	for i := range r.Decisions {
		if r.Decisions[i].Kind == DecisionPreflight {
			pre = &r.Decisions[i]
		}
	}
	if pre == nil || len(pre.Checklist.Unchecked()) != 1 || pre.Checklist.Unchecked()[0].Name != CheckAgent {
		t.Fatalf("preflight decision %+v, want the agent item unchecked", pre)
	}
	h.assertSlots(func(Device) string { return SlotBlue })
}

// TestDeclaredLayerWithoutEvidenceFails checks the gate half of I3: a
// device whose declared functional layer never reports is failed at its
// deadline, never passed.
func TestDeclaredLayerWithoutEvidenceFails(t *testing.T) {
	h := newHarness(t, 12)
	h.upgradeFrom("1.0.0")
	h.policy.Health.Functional = &Functional{Probe: "http-json", MaxLatency: 250 * time.Millisecond}
	h.health.noL4 = true // the agent runs, but no functional check appears
	r, err := h.run(context.Background())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if r.Outcome == OutcomeSucceeded {
		t.Fatal("a release whose functional layer never reported was confirmed")
	}
	for _, rec := range r.StageDevices(0) {
		if !rec.FailedInRun() || rec.Layer != 4 {
			t.Errorf("canary device %s: %s at layer %d (%s), want failed at layer 4", rec.Name, rec.State, rec.Layer, rec.Reason)
		}
	}
}

func TestBuildChecklist(t *testing.T) {
	p := ctrlPolicy()
	p.Release.Jobspec = "app.nomad.hcl"
	devs := fleet(6)
	plan, err := PlanRollout(p, devs)
	if err != nil {
		t.Fatal(err)
	}
	healthy := func() map[string]DeviceHealth {
		out := map[string]DeviceHealth{}
		for _, d := range devs {
			out[d.ID] = DeviceHealth{Online: true, Alloc: &AllocHealth{Status: "running"},
				Checks: []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "passing"}, {Name: "fleetplan L1 connectivity", Layer: 1, Status: "passing"}}}
		}
		return out
	}
	tests := []struct {
		name      string
		in        func() PreflightInput
		unchecked []string
	}{
		{"all good", func() PreflightInput {
			return PreflightInput{Policy: p, Plan: plan, Active: SlotBlue, Health: healthy()}
		}, nil},
		{"first install", func() PreflightInput {
			return PreflightInput{Policy: p, Plan: plan, Health: map[string]DeviceHealth{}}
		}, nil},
		{"jobspec", func() PreflightInput {
			return PreflightInput{Policy: p, Plan: plan, Active: SlotBlue, Health: healthy(), JobspecErr: errors.New("line 3: bad")}
		}, []string{CheckJobspec}},
		{"registry", func() PreflightInput {
			return PreflightInput{Policy: p, Active: SlotBlue, Health: healthy(), RegistryErr: errors.New("consul down")}
		}, []string{CheckRegistry}},
		{"old slot unhealthy", func() PreflightInput {
			hs := healthy()
			hs[devs[0].ID] = DeviceHealth{Online: true, Alloc: &AllocHealth{Status: "running"}, Checks: []CheckResult{{Name: "fleetplan L3 application", Layer: 3, Status: "critical"}}}
			return PreflightInput{Policy: p, Plan: plan, Active: SlotBlue, Health: hs}
		}, []string{CheckOldHealthy}},
		{"old slot not running", func() PreflightInput {
			hs := healthy()
			hs[devs[1].ID] = DeviceHealth{Online: true}
			return PreflightInput{Policy: p, Plan: plan, Active: SlotBlue, Health: hs}
		}, []string{CheckOldHealthy}},
		{"health unreadable", func() PreflightInput {
			return PreflightInput{Policy: p, Plan: plan, Active: SlotBlue, HealthErr: errors.New("stale")}
		}, []string{CheckAgent}},
		{"system layer without agent", func() PreflightInput {
			q := *p
			q.Health.System = &SystemHealth{MaxCPUPercent: 90}
			hs := healthy()
			for id, h := range hs {
				h.Checks = h.Checks[:1] // no agent checks at all
				hs[id] = h
			}
			return PreflightInput{Policy: &q, Plan: plan, Active: SlotBlue, Health: hs}
		}, []string{CheckAgent}},
		{"serfHealth is not the agent", func() PreflightInput {
			q := *p
			q.Health.Functional = &Functional{Probe: "http-json"}
			hs := healthy()
			for id, h := range hs {
				h.Checks = []CheckResult{h.Checks[0], {Name: "serfHealth", Layer: 1, Status: "passing"}}
				hs[id] = h
			}
			return PreflightInput{Policy: &q, Plan: plan, Active: SlotBlue, Health: hs}
		}, []string{CheckAgent}},
		{"agent without the system layer", func() PreflightInput {
			q := *p
			q.Health.System = &SystemHealth{MaxCPUPercent: 90}
			return PreflightInput{Policy: &q, Plan: plan, Active: SlotBlue, Health: healthy()}
		}, []string{CheckLayers}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := BuildChecklist(tt.in())
			var got []string
			for _, it := range cl.Unchecked() {
				got = append(got, it.Name)
				if it.Fix == "" {
					t.Errorf("unchecked item %q has no fix", it.Name)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.unchecked, "|") {
				t.Fatalf("unchecked %v, want %v\n%+v", got, tt.unchecked, cl)
			}
			if len(cl) < 6 && tt.name != "registry" && tt.name != "health unreadable" {
				t.Errorf("checklist has %d items, want every item listed", len(cl))
			}
		})
	}
}
