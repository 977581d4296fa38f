//go:build integration

package command_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// status -watch follows the rollout's keys with a blocking query: it prints
// a line when the state changes and ends when the rollout finished. No
// rollout runs: the test writes the state itself.
func TestIntegrationStatusWatchFollowsKeys(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-watch"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := store.New(c.Consul, store.Options{})
	r := &scheduler.Rollout{App: app, ID: "r1", Version: "2.0.0", Phase: scheduler.PhaseCanary, Step: scheduler.StepSoaking}
	if err := st.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}

	var out, errb syncBuffer
	cmd := exec.CommandContext(ctx, fleetplanBin, "status", "-watch", app)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(want string) {
		t.Helper()
		testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
			return strings.Contains(out.String(), want), "status -watch printed:\n" + out.String() + errb.String()
		})
	}
	waitFor(app + " 2.0.0 CANARY/soaking")

	r.Phase, r.Step, r.Stage = scheduler.PhaseWave, scheduler.StepSwitching, 1
	if err := st.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	waitFor(app + " 2.0.0 WAVE/switching")

	r.Phase, r.Step, r.Outcome = scheduler.PhaseDone, "", scheduler.OutcomeSucceeded
	if err := st.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("status -watch: %v\n%s%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "outcome succeeded") {
		t.Errorf("the last line does not say the rollout finished:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Errorf("%d lines for three states, want 3:\n%s", n, out.String())
	}
}
