//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// TestIntegrationABComparison runs an A/B on the dev cluster: 1.0.0 answers
// /infer in 50 ms everywhere; 2.0.0 is the same except on jetson devices,
// where it takes 60 ms (20 % more). With promote_if = "not-worse" and a
// 10 % latency tolerance the comparison must find B worse on jetson (and
// only there) with the Mann-Whitney test's p-value, roll B back, and say
// so in the report's table.
//
// The measurements are the device agents' summaries (contract.Summary,
// written on the summary request the comparison names in the agent
// configuration): the test passes once the agent writes them.
func TestIntegrationABComparison(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-abcmp"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	installAgent(t, ctx, c)
	devices := deployableDevices(t, ctx, c)
	dir := t.TempDir()

	v1 := writePolicy(t, dir, policySpec{App: app, Version: "1.0.0", Env: map[string]string{"EDGEINFER_FAULT_SLOW": "50ms"},
		CanarySoak: "3s", WaveSoak: "2s", MaxLatency: "500ms"})
	if res := fleetplan(t, ctx, "apply", "-auto-approve", v1); res.code != 0 {
		t.Fatalf("1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}

	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	src := fmt.Sprintf(`rollout %q {
  fleet { selector = "Meta.fleet == \"vision\"" }
  strategy = "a-b"
  release {
    jobspec = %q
    version = "2.0.0"
    env = { EDGEINFER_FAULT_SLOW = "50ms" }
    variant "jetson" {
      env = { EDGEINFER_FAULT_SLOW = "60ms" }
    }
  }
  max_parallel = 6
  canary {
    percent = 5
    soak    = "5s"
  }
  wave {
    percent = 50
    soak    = "5s"
  }
  ab {
    duration     = "75s"
    promote_if   = "not-worse"
    confidence   = 0.95
    min_samples  = 8
    min_requests = 10
    tolerance {
      error_rate          = 0.05
      p95_latency_percent = 10
    }
  }
  health {
    grace = "5s"
    application {
      path           = "/health"
      interval       = "2s"
      timeout        = "1s"
      expect_version = true
      max_restarts   = 1
    }
    functional {
      probe       = "http-json"
      path        = "/infer"
      input       = jsonencode({ image = "cat.jpg" })
      expect      = { label = "cat" }
      max_latency = "500ms"
      interval    = "2s"
    }
  }
  rollback {
    max_failure_percent              = 0
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 100
    scope                            = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, app, jobspec)
	v2 := filepath.Join(dir, app+"-2.0.0-ab.fleet.hcl")
	if err := os.WriteFile(v2, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res := fleetplan(t, ctx, "apply", "-auto-approve", v2)
	t.Logf("apply 2.0.0 (a-b) exited %d\n%s\n%s", res.code, res.stdout, res.stderr)

	md := fleetplan(t, ctx, "report", app)
	t.Logf("report:\n%s", md.stdout)
	rep := fleetplan(t, ctx, "report", "-format", "json", app)
	var doc struct {
		Outcome string `json:"outcome"`
		AB      *struct {
			Verdict string `json:"verdict"`
			Summary string `json:"summary"`
			Rows    []struct {
				Class, Metric, Test, Verdict string
				P                            string `json:"p_value"`
			} `json:"rows"`
		} `json:"ab"`
	}
	if err := json.Unmarshal([]byte(rep.stdout), &doc); err != nil {
		t.Fatalf("report -format json: %v\n%s", err, rep.stdout)
	}
	if doc.AB == nil {
		t.Fatalf("the report of the a-b run has no comparison (outcome %q)", doc.Outcome)
	}
	if doc.AB.Verdict != "B worse beyond the tolerance" || doc.Outcome != "rolled-back" || res.code != 1 {
		t.Fatalf("verdict %q (%s), outcome %q, exit %d: want B worse beyond the tolerance, rolled back, exit 1 "+
			"(\"not enough data\" means the device agents wrote no summaries with latency samples under fleetplan/agent/summaries/%s/)",
			doc.AB.Verdict, doc.AB.Summary, doc.Outcome, res.code, app)
	}
	seen := map[string]bool{}
	for _, row := range doc.AB.Rows {
		if row.Metric != "latency p50 / p95" {
			continue
		}
		seen[row.Class] = true
		switch row.Class {
		case "jetson":
			p := 1.0
			if strings.HasPrefix(row.P, "<") {
				p = 0
			} else if v, err := strconv.ParseFloat(row.P, 64); err == nil {
				p = v
			}
			if row.Verdict != "B worse beyond the tolerance" || !strings.Contains(row.Test, "Mann-Whitney") || p >= 0.05 {
				t.Errorf("jetson latency row %+v: want B worse beyond the tolerance by Mann-Whitney U with p < 0.05", row)
			}
		case "rpi", "gateway":
			if row.Verdict == "B worse beyond the tolerance" {
				t.Errorf("%s latency row %+v: the release is not slower there", row.Class, row)
			}
		}
	}
	if !seen["jetson"] || !seen["overall"] {
		t.Errorf("latency rows for classes %v, want jetson and overall", seen)
	}
	if !strings.Contains(md.stdout, "**A/B comparison**") || !strings.Contains(md.stdout, "| jetson | latency p50 / p95 |") {
		t.Errorf("the Markdown report lacks the comparison table")
	}
	// B was rolled back: every device runs 1.0.0 on blue again.
	waitSettled(t, c, devices, app, "blue", "1.0.0")
}
