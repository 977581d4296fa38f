//go:build integration

package command_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// TestIntegrationNoUngatedPlacement checks defect 1 on the real cluster:
// after an a-b rollout left part of the fleet (its group B) on the colour
// that is the next candidate's (a held A/B keeps the active slot), applying
// the next release places it on no device before the controller switches
// that device, and the rejected candidate job runs nowhere after its
// rollback (before: every device on that colour got the new release the
// moment its job was registered, and kept it).
func TestIntegrationNoUngatedPlacement(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-ab"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	write := func(version, strategy, lastWave, status string) string {
		src := fmt.Sprintf(`rollout %q {
  fleet { selector = "Meta.fleet == \"vision\"" }
  strategy = %q
  release {
    jobspec = %q
    version = %q
    env = { HELLO_STATUS = %q }
  }
  max_parallel = 6
  canary {
    percent = 5
    soak    = "5s"
  }
  wave {
    percent = %s
    soak    = "4s"
  }
  health {
    grace = "3s"
    application {
      interval = "2s"
      timeout  = "1s"
    }
  }
  rollback {
    max_failure_percent = 0
    scope               = "fleet"
  }
}
`, app, strategy, filepath.Join(testcluster.RepoRoot(), "examples", "hello.nomad.hcl"), version, status, lastWave)
		path := filepath.Join(dir, version+".fleet.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if res := fleetplan(t, ctx, "apply", "-auto-approve", write("1.0.0", "canary-rolling", "100", "healthy")); res.code != 0 {
		t.Fatalf("1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// a-b (no ab block: report only): the canary and a wave to 50 % move
	// to green and are held there (group B); the rest stays on blue, which
	// stays the active slot, so green is again the next candidate's colour.
	if res := fleetplan(t, ctx, "apply", "-auto-approve", write("2.0.0", "a-b", "50", "healthy")); res.code != 0 {
		t.Fatalf("2.0.0 (a-b) exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	const next = "green"
	onNext := 0
	for _, name := range c.Devices {
		node, _, err := c.Nomad.Nodes().Info(c.NodeID(t, name), nil)
		if err == nil && node.Meta[contract.SlotMetaKey(app)] == next {
			onNext++
		}
	}
	if onNext == 0 {
		t.Fatalf("precondition: the a-b rollout left no device on %s", next)
	}

	// Watch the green job's allocations while 3.0.0 (unhealthy) is applied:
	// every allocation created from now on carries the candidate.
	start := time.Now()
	placed := map[string]bool{}
	var mu sync.Mutex
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wctx.Err() == nil {
			allocs, _, err := c.Nomad.Jobs().Allocations(contract.SlotJobID(app, next), true, (&nomad.QueryOptions{}).WithContext(wctx))
			if err == nil {
				mu.Lock()
				for _, a := range allocs {
					if time.Unix(0, a.CreateTime).After(start) {
						placed[a.NodeName] = true
					}
				}
				mu.Unlock()
			}
			select {
			case <-wctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	res := fleetplan(t, ctx, "apply", "-auto-approve", write("3.0.0", "canary-rolling", "100", "unhealthy"))
	stop()
	<-done
	if res.code != 1 {
		t.Fatalf("an unhealthy 3.0.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	st := statusOf(t, ctx, app)
	switched := map[string]bool{}
	for _, r := range auditTrail(t, ctx, app, st.Rollout.ID) {
		if r.Action == "switch" && r.Outcome == "intent" {
			switched[r.Device] = true
		}
	}
	var ungated []string
	for node := range placed {
		if !switched[node] {
			ungated = append(ungated, node)
		}
	}
	sort.Strings(ungated)
	if len(ungated) > 0 {
		t.Fatalf("3.0.0 was placed on %v, which the controller never switched (switched: %v)", ungated, switched)
	}
	if len(switched) == 0 {
		t.Fatalf("the canary switched no device:\n%s", res.stdout)
	}
	// The rejected candidate runs nowhere.
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		allocs, _, err := c.Nomad.Jobs().Allocations(contract.SlotJobID(app, next), false, nil)
		if err != nil {
			return false, err.Error()
		}
		var running []string
		for _, a := range allocs {
			if a.ClientStatus == "running" && time.Unix(0, a.CreateTime).After(start) {
				running = append(running, a.NodeName)
			}
		}
		return len(running) == 0, fmt.Sprintf("the rejected 3.0.0 still runs on %v", running)
	})
}
