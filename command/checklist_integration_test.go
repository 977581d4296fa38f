//go:build integration

package command_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// TestIntegrationChecklistStopsWithoutAgent checks defect 3 on the real
// cluster: with the device agent not installed, a policy with a functional
// layer stops at the pre-flight checklist (before: it rolled out to 100 %),
// says which item and how to fix it, and registers nothing.
func TestIntegrationChecklistStopsWithoutAgent(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-nocheck"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, _, err := c.Nomad.Jobs().Info(contract.AgentJobID, nil); err == nil {
		// Leave the cluster as it was found.
		t.Cleanup(func() { installAgent(t, context.Background(), c) })
		if res := fleetplan(t, ctx, "agent", "uninstall"); res.code != 0 {
			t.Fatalf("agent uninstall exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
	}
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		var left []string
		for _, name := range c.Devices {
			checks, _, err := c.Consul.Health().Node(name, nil)
			if err != nil {
				return false, err.Error()
			}
			for _, ch := range checks {
				if ch.Name == contract.CheckConnectivity || ch.Name == contract.CheckSystem {
					left = append(left, name)
				}
			}
		}
		return len(left) == 0, fmt.Sprintf("the agent's node checks are still registered on %v", left)
	})

	res := fleetplan(t, ctx, "apply", "-auto-approve", writePolicy(t, t.TempDir(), policySpec{App: app, Version: "1.0.0"}))
	if res.code != 3 {
		t.Fatalf("apply without the device agent exited %d, want 3 (halted at the checklist)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	out := res.stdout + res.stderr
	for _, want := range []string{"[ ] device agent on every target device", "Halted: pre-flight checklist", "install the device agent"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply's output does not say %q:\n%s", want, out)
		}
	}
	// I10: the release's health configuration is published for the device
	// agents only once every check passed.
	if pair, _, err := c.Consul.KV().Get("fleetplan/agent/apps/"+app, nil); err != nil || pair != nil {
		t.Errorf("the agents' health config of %s was written despite the checklist (%v)", app, err)
	}
	for _, slot := range []string{"blue", "green"} {
		if job, _, err := c.Nomad.Jobs().Info(contract.SlotJobID(app, slot), nil); err == nil && job != nil {
			t.Errorf("slot job %s was registered despite the checklist", *job.ID)
		}
	}
}
