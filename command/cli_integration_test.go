//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// TestIntegrationCLIHabits runs fleetplan the way a Nomad operator types
// it: flags after the policy file, -json output for a pipeline, connection
// flags that override the environment, global flags after the command.
func TestIntegrationCLIHabits(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-cli"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	installAgent(t, ctx, c)

	file := writePolicy(t, t.TempDir(), policySpec{App: app, Version: "1.0.0", CanarySoak: "3s", WaveSoak: "2s"})
	res := fleetplan(t, ctx, "apply", file, "-auto-approve", "-json")
	var doc struct {
		ExitCode int `json:"exit_code"`
		Rollouts []struct {
			Rollout, Version, Run, Outcome string
			ExitCode                       int `json:"exit_code"`
			State                          *struct {
				Phase string `json:"phase"`
			} `json:"state"`
		} `json:"rollouts"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 0 {
		t.Fatalf("apply FILE -auto-approve -json: exit %d, stdout is not the JSON result (%v)\nstdout:\n%s\nstderr:\n%s", res.code, err, res.stdout, res.stderr)
	}
	if len(doc.Rollouts) != 1 || doc.Rollouts[0].Rollout != app || doc.Rollouts[0].Outcome != "succeeded" || doc.Rollouts[0].Run == "" ||
		doc.Rollouts[0].State == nil || doc.ExitCode != 0 {
		t.Errorf("apply -json result: %+v\n%s", doc, res.stdout)
	}
	if !strings.Contains(res.stderr, "==> Rollout "+app) {
		t.Errorf("apply -json: the progress is not on stderr:\n%s", res.stderr)
	}

	// The flags win over an environment that points nowhere.
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1")
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	conn := []string{"-address", "http://127.0.0.1:4646", "-consul-address", "127.0.0.1:8500"}
	res = fleetplan(t, ctx, append([]string{"status", app, "-json"}, conn...)...)
	var st struct {
		Rollout struct{ App, Outcome string } `json:"rollout"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || res.code != 0 || st.Rollout.App != app {
		t.Errorf("status ROLLOUT -json -address ... -consul-address ...: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if res = fleetplan(t, ctx, "status", app); res.code != 3 || !strings.Contains(res.stderr, "127.0.0.1:1") {
		t.Errorf("status without the flags reached the cluster (exit %d): %s", res.code, res.stderr)
	}

	// A request that does not apply (the rollout is finished) is exit 1,
	// with the global -log-level after the command.
	res = fleetplan(t, ctx, append([]string{"pause", app, "-json", "-log-level", "debug"}, conn...)...)
	if res.code != 1 {
		t.Errorf("pause of a finished rollout: exit %d, want 1\n%s%s", res.code, res.stdout, res.stderr)
	}
}
