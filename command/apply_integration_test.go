//go:build integration

package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	nomad "github.com/hashicorp/nomad/api"
)

var fleetplanBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetplan-itest")
	if err != nil {
		panic(err)
	}
	fleetplanBin = filepath.Join(dir, "fleetplan")
	build := exec.Command("go", "build", "-o", fleetplanBin, ".")
	build.Dir = testcluster.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building fleetplan: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// policy writes a policy for app at version with extra env lines into dir.
func policy(t *testing.T, dir, app, version string, env map[string]string, scope string) string {
	t.Helper()
	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	var envLines strings.Builder
	for k, v := range env {
		fmt.Fprintf(&envLines, "      %s = %q\n", k, v)
	}
	src := fmt.Sprintf(`rollout %q {
  fleet { selector = "Meta.fleet == \"vision\"" }
  release {
    jobspec = %q
    version = %q
    env = {
%s    }
  }
  max_parallel = 6
  canary {
    percent = 5
    soak    = "8s"
  }
  wave {
    percent = 50
    soak    = "4s"
  }
  wave {
    percent = 100
    soak    = "4s"
  }
  health {
    grace = "3s"
    application {
      interval     = "1s"
      timeout      = "1s"
      max_restarts = 1
    }
  }
  rollback {
    max_failure_percent = 0
    scope               = %q
  }
  offline { max_offline_percent = 50 }
}
`, app, jobspec, version, envLines.String(), scope)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", app, version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code   int
	stdout string
	stderr string
}

func fleetplan(t *testing.T, ctx context.Context, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, fleetplanBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running fleetplan %v: %v", args, err)
	}
	return result{code, out.String(), errb.String()}
}

// cleanup removes everything a test app left on the cluster.
func cleanup(t *testing.T, c *testcluster.Cluster, app string) {
	t.Helper()
	t.Cleanup(func() {
		for _, slot := range []string{"blue", "green"} {
			_, _, _ = c.Nomad.Jobs().Deregister(app+"-"+slot, true, nil)
		}
		for _, name := range c.Devices {
			id := c.NodeID(t, name)
			key := "fleetplan." + app + ".slot"
			_, _ = c.Nomad.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: id, Meta: map[string]*string{key: nil}}, nil)
		}
		for _, p := range []string{"fleetplan/rollouts/" + app, "fleetplan/apps/" + app, "fleetplan/audit/" + app, "fleetplan/agent/apps/" + app} {
			_, _ = c.Consul.KV().DeleteTree(p, nil)
		}
		// Devices this app's rollouts quarantined must not stay excluded
		// from the other tests' rollouts.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		list := fleetplan(t, ctx, "registry", "list", "-json", "-status", "quarantined")
		var devs []struct{ Name, Reason string }
		_ = json.Unmarshal([]byte(list.stdout), &devs)
		for _, d := range devs {
			if strings.Contains(d.Reason, "rollout "+app+" ") {
				fleetplan(t, ctx, "registry", "release", d.Name)
			}
		}
	})
}

// fleetState checks that every device runs exactly one live allocation of
// the app, in the slot its node meta names, answering want (version). It
// returns a description of what is wrong, or "".
func fleetState(c *testcluster.Cluster, app, wantSlot, wantVersion string) string {
	var problems []string
	for _, name := range c.Devices {
		nodes, _, err := c.Nomad.Nodes().List(&nomad.QueryOptions{Filter: `Name == "` + name + `"`})
		if err != nil || len(nodes) != 1 {
			return fmt.Sprintf("node %s: %v", name, err)
		}
		node, _, err := c.Nomad.Nodes().Info(nodes[0].ID, nil)
		if err != nil {
			return err.Error()
		}
		slot := node.Meta["fleetplan."+app+".slot"]
		if slot != wantSlot {
			problems = append(problems, fmt.Sprintf("%s meta slot %q, want %q", name, slot, wantSlot))
			continue
		}
		allocs, _, err := c.Nomad.Nodes().Allocations(nodes[0].ID, nil)
		if err != nil {
			return err.Error()
		}
		var live []*nomad.Allocation
		for _, a := range allocs {
			if strings.HasPrefix(a.JobID, app+"-") && a.DesiredStatus == "run" && a.ClientStatus == "running" {
				live = append(live, a)
			}
		}
		if len(live) != 1 {
			problems = append(problems, fmt.Sprintf("%s has %d running allocations of %s", name, len(live), app))
			continue
		}
		if live[0].JobID != app+"-"+wantSlot {
			problems = append(problems, fmt.Sprintf("%s runs %s, want slot %s", name, live[0].JobID, wantSlot))
			continue
		}
		// The application itself answers the version.
		port := 0
		for _, n := range live[0].AllocatedResources.Shared.Networks {
			for _, p := range n.DynamicPorts {
				if p.Label == "http" {
					port = p.Value
				}
			}
		}
		if port == 0 {
			for _, p := range live[0].AllocatedResources.Shared.Ports {
				if p.Label == "http" {
					port = p.Value
				}
			}
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", port))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var h struct{ Status, Version string }
		_ = json.Unmarshal(body, &h)
		if resp.StatusCode != 200 || h.Version != wantVersion || h.Status != "healthy" {
			problems = append(problems, fmt.Sprintf("%s answers %d %s %s, want healthy %s", name, resp.StatusCode, h.Status, h.Version, wantVersion))
		}
	}
	return strings.Join(problems, "; ")
}

func waitFleet(t *testing.T, c *testcluster.Cluster, app, slot, version string) {
	t.Helper()
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		msg := fleetState(c, app, slot, version)
		return msg == "", msg
	})
}

func TestIntegrationApplyUpgradeAndAutomaticRollback(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-upgrade"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	res := fleetplan(t, ctx, "apply", "-auto-approve", policy(t, dir, app, "1.0.0", nil, "wave"))
	if res.code != 0 {
		t.Fatalf("installing 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "blue", "1.0.0")

	res = fleetplan(t, ctx, "apply", "-auto-approve", policy(t, dir, app, "2.0.0", nil, "wave"))
	if res.code != 0 {
		t.Fatalf("rolling out 2.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "green", "2.0.0")

	// The report agrees with what Nomad and Consul show.
	rep := fleetplan(t, ctx, "report", "-format", "json", app)
	var doc2 struct {
		Version string `json:"version"`
		Outcome string `json:"outcome"`
		Status  []struct {
			Status string `json:"status"`
			Count  int    `json:"count"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(rep.stdout), &doc2); err != nil {
		t.Fatalf("report -format json: %v\n%s", err, rep.stdout)
	}
	if doc2.Version != "2.0.0" || doc2.Outcome != "succeeded" || len(doc2.Status) == 0 || doc2.Status[0].Count != len(c.Devices) {
		t.Errorf("report %+v, want 2.0.0 succeeded with %d devices deployed (as Nomad shows)", doc2, len(c.Devices))
	}
	entries, _, err := c.Consul.Health().Service("edgeinfer", "fleetplan-version=2.0.0", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	healthy := 0
	for _, e := range entries {
		for _, tag := range e.Service.Tags {
			if tag == "fleetplan-slot=green" {
				healthy++
			}
		}
	}
	if healthy < len(c.Devices) {
		// Other tests' apps register "edgeinfer" too; at least this
		// app's instances must all pass.
		t.Errorf("Consul shows %d passing 2.0.0 instances in slot green, the report %d", healthy, doc2.Status[0].Count)
	}

	// 3.0.0 crashes at start: the canary catches it.
	res = fleetplan(t, ctx, "apply", "-auto-approve", policy(t, dir, app, "3.0.0", map[string]string{"EDGEINFER_FAULT_CRASH": "1"}, "wave"))
	if res.code != 1 {
		t.Fatalf("rolling out a crashing 3.0.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "crash loop") && !strings.Contains(res.stdout, "allocation") {
		t.Errorf("the rollback does not say why:\n%s", res.stdout)
	}
	waitFleet(t, c, app, "green", "2.0.0")

	st := fleetplan(t, ctx, "status", "-json", app)
	var doc struct {
		State struct {
			Outcome string `json:"outcome"`
		} `json:"state"`
		Analysis string `json:"failure_analysis"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &doc); err != nil {
		t.Fatalf("status -json: %v\n%s", err, st.stdout)
	}
	if doc.State.Outcome != "rolled-back" || !strings.Contains(doc.Analysis, "artifact issue") {
		t.Errorf("status after the rollback: outcome %q analysis %q", doc.State.Outcome, doc.Analysis)
	}
}

func TestIntegrationKilledControllerResumes(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-kill"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	file := policy(t, dir, app, "1.0.0", nil, "wave")

	cmd := exec.CommandContext(ctx, fleetplanBin, "apply", "-auto-approve", file)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it in the middle of a wave (after the canary).
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), "[WAVE wave 1]") || strings.Contains(out.String(), "[WAVE wave 2]"), "waiting for a wave to start:\n" + out.String()
	})
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	// Started again, the controller waits for the dead one's lock to expire
	// and finishes the rollout.
	res := fleetplan(t, ctx, "apply", "-wait", "-auto-approve", file)
	if res.code != 0 {
		t.Fatalf("resumed apply exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "resume") {
		t.Errorf("the second controller did not resume:\n%s", res.stdout)
	}
	waitFleet(t, c, app, "blue", "1.0.0")

	// The audit trail has every device action with its outcome: each
	// intent is followed by an outcome for the same device and action,
	// even the one the killed controller left open (re-run on resume).
	au := fleetplan(t, ctx, "audit", "-json", "-rollout", app)
	var recs []struct {
		Device, Action, Outcome string
	}
	if err := json.Unmarshal([]byte(au.stdout), &recs); err != nil {
		t.Fatalf("audit -json: %v\n%s", err, au.stdout)
	}
	open := map[string]int{}
	switched := map[string]bool{}
	for _, r := range recs {
		if r.Device == "" || r.Action != "switch" {
			continue
		}
		if r.Outcome == "intent" {
			open[r.Device]++
		} else {
			open[r.Device] = 0
			if r.Outcome == "ok" {
				switched[r.Device] = true
			}
		}
	}
	for _, name := range c.Devices {
		if !switched[name] {
			t.Errorf("the audit trail has no successful switch of %s", name)
		}
		if open[name] != 0 {
			t.Errorf("the audit trail ends with a switch intent of %s without its outcome", name)
		}
	}
}

func TestIntegrationOfflineDeviceIsSkipped(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-offline"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// Which device is in the last wave? Ask the planner.
	file := policy(t, dir, app, "1.0.0", nil, "wave")
	plan := fleetplan(t, ctx, "plan", "-json", file)
	var doc struct {
		Rollouts []struct {
			Stages []struct {
				Devices []struct{ Name string } `json:"devices"`
			} `json:"stages"`
		} `json:"rollouts"`
	}
	if err := json.Unmarshal([]byte(plan.stdout), &doc); err != nil || len(doc.Rollouts) != 1 || len(doc.Rollouts[0].Stages) < 3 {
		t.Fatalf("plan -json: %v\n%s\n%s", err, plan.stdout, plan.stderr)
	}
	if plan.code != 1 {
		t.Errorf("plan of a new release exited %d, want 1 (changes)", plan.code)
	}
	stages := doc.Rollouts[0].Stages
	// The plan names every device of the fleet exactly once.
	seen := map[string]int{}
	for _, st := range stages {
		for _, d := range st.Devices {
			seen[d.Name]++
		}
	}
	for _, name := range c.Devices {
		if seen[name] != 1 {
			t.Errorf("plan names %s %d times, want once", name, seen[name])
		}
	}
	if len(seen) != len(c.Devices) {
		t.Errorf("plan names %d devices, the cluster has %d", len(seen), len(c.Devices))
	}
	victim := stages[len(stages)-1].Devices[0].Name
	c.DeviceDown(t, victim)

	res := fleetplan(t, ctx, "apply", "-auto-approve", file)
	if res.code != 0 {
		t.Fatalf("apply with %s down exited %d\n%s\n%s", victim, res.code, res.stdout, res.stderr)
	}
	st := fleetplan(t, ctx, "status", "-json", app)
	var sdoc struct {
		Devices []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		} `json:"devices"`
		State struct {
			Skipped int `json:"skipped_count"`
			Healthy int `json:"healthy_count"`
		} `json:"state"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &sdoc); err != nil {
		t.Fatal(err)
	}
	for _, d := range sdoc.Devices {
		want := "healthy"
		if d.Name == victim {
			want = "skipped-offline"
		}
		if d.State != want {
			t.Errorf("%s is %s, want %s", d.Name, d.State, want)
		}
	}
	if sdoc.State.Skipped != 1 || sdoc.State.Healthy != len(c.Devices)-1 {
		t.Errorf("skipped %d healthy %d", sdoc.State.Skipped, sdoc.State.Healthy)
	}

	// Back online, catch-up switches it through the gate.
	c.DeviceUp(t, victim)
	res = fleetplan(t, ctx, "catch-up", "-wait", app)
	if res.code != 0 || !strings.Contains(res.stdout, victim) || !strings.Contains(res.stdout, "0 device(s) still to catch up") {
		t.Fatalf("catch-up exited %d, want 0 with %s caught up\n%s\n%s", res.code, victim, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "blue", "1.0.0")
}

func TestIntegrationConcurrentApplyReportsLockHolder(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-lock"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	file := policy(t, dir, app, "1.0.0", nil, "wave")

	first := exec.CommandContext(ctx, fleetplanBin, "apply", file) // manual approval: it waits
	var out bytes.Buffer
	first.Stdout, first.Stderr = &out, &out
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = first.Process.Signal(os.Interrupt)
		_ = first.Wait()
	}()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), "fleetplan approve"), "waiting for the first controller to wait for approval:\n" + out.String()
	})
	second := fleetplan(t, ctx, "apply", file)
	if second.code != 3 || !strings.Contains(second.stderr, "another controller") || !strings.Contains(second.stderr, "pid") {
		t.Fatalf("second apply exited %d:\n%s%s\nwant exit 3 naming the holder", second.code, second.stdout, second.stderr)
	}
	// The approval goes to the first controller, which finishes.
	ap := fleetplan(t, ctx, "approve", "-m", "integration test", "-actor", "tester@ci", app)
	if ap.code != 0 {
		t.Fatalf("approve exited %d: %s%s", ap.code, ap.stdout, ap.stderr)
	}
	if err := first.Wait(); err != nil {
		t.Fatalf("first apply: %v\n%s", err, out.String())
	}
	waitFleet(t, c, app, "blue", "1.0.0")
	rep := fleetplan(t, ctx, "report", "-format", "json", app)
	if !strings.Contains(rep.stdout, "tester@ci") {
		t.Errorf("the report does not name the approver:\n%s", rep.stdout)
	}
}

// An application fleetplan has never seen (a few lines of Python whose
// health endpoint follows the contract) rolls out and back like the demo app.
func TestIntegrationUnknownApplication(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-hello"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	write := func(version, status string) string {
		src := fmt.Sprintf(`rollout %q {
  fleet { selector = "Meta.fleet == \"vision\"" }
  release {
    jobspec = %q
    version = %q
    env = { HELLO_STATUS = %q }
  }
  max_parallel = 6
  canary {
    percent = 5
    soak    = "6s"
  }
  wave {
    percent = 100
    soak    = "4s"
  }
  health {
    grace = "3s"
    application {
      interval = "2s"
      timeout  = "1s"
    }
  }
  rollback { max_failure_percent = 0 }
}
`, app, filepath.Join(testcluster.RepoRoot(), "examples", "hello.nomad.hcl"), version, status)
		path := filepath.Join(dir, version+".fleet.hcl")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	if res := fleetplan(t, ctx, "apply", "-auto-approve", write("1.0.0", "healthy")); res.code != 0 {
		t.Fatalf("hello 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if res := fleetplan(t, ctx, "apply", "-auto-approve", write("1.1.0", "unhealthy")); res.code != 1 {
		t.Fatalf("an unhealthy hello 1.1.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// Every device still answers 1.0.0 from slot blue.
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		entries, _, err := c.Consul.Health().Service("hello", "fleetplan-slot=blue", true, nil)
		if err != nil {
			return false, err.Error()
		}
		nodes := map[string]bool{}
		for _, e := range entries {
			for _, ch := range e.Checks {
				if ch.Name == "fleetplan L3 application" && strings.Contains(ch.Output, `"version": "1.0.0"`) {
					nodes[e.Node.Node] = true
				}
			}
		}
		return len(nodes) == len(c.Devices), fmt.Sprintf("%d of %d devices pass on hello 1.0.0", len(nodes), len(c.Devices))
	})
}
