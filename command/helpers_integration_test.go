//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// policySpec is a rollout policy of the demo application for the tests that
// need more than policy() offers: soaks, failure budget and a functional
// block.
type policySpec struct {
	App, Version string
	Env          map[string]string
	CanarySoak   string // default "12s"
	WaveSoak     string // default "4s"
	// MaxFailurePercent is rollback.max_failure_percent (default 0).
	MaxFailurePercent float64
	// MaxLatency is the functional block's max_latency (default "250ms").
	MaxLatency string
}

// writePolicy writes the policy into dir and returns its path. Every policy
// has the four layers: the application check (every 2 s), the agent's
// functional probe of /infer (every 2 s) and the measured thresholds.
func writePolicy(t *testing.T, dir string, s policySpec) string {
	t.Helper()
	if s.CanarySoak == "" {
		s.CanarySoak = "12s"
	}
	if s.WaveSoak == "" {
		s.WaveSoak = "4s"
	}
	if s.MaxLatency == "" {
		s.MaxLatency = "250ms"
	}
	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	keys := make([]string, 0, len(s.Env))
	for k := range s.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var env strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&env, "      %s = %q\n", k, s.Env[k])
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
    soak    = %q
  }
  wave {
    percent = 50
    soak    = %q
  }
  wave {
    percent = 100
    soak    = %q
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
      max_latency = %q
      interval    = "2s"
    }
  }
  rollback {
    max_failure_percent              = %g
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 100
    scope                            = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, s.App, jobspec, s.Version, env.String(), s.CanarySoak, s.WaveSoak, s.WaveSoak, s.MaxLatency, s.MaxFailurePercent)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", s.App, s.Version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// installAgent makes sure the device agent runs on every device (fleetplan
// agent install -default-system cpu=off: the devices share one busy host)
// and that each has registered its node checks. The job is purged when the
// test ends, unless it was there before the test (then it is left as the
// test found it: registered, with these arguments).
func installAgent(t *testing.T, ctx context.Context, c *testcluster.Cluster) {
	t.Helper()
	_, _, err := c.Nomad.Jobs().Info("fleetplan-agent", nil)
	existed := err == nil
	res := fleetplan(t, ctx, "agent", "install", "-default-system", "cpu=off")
	if res.code != 0 {
		t.Fatalf("agent install exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !existed {
		t.Cleanup(func() {
			res := fleetplan(t, context.Background(), "agent", "uninstall")
			if res.code != 0 {
				t.Errorf("agent uninstall exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
			}
		})
	}
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		var missing []string
		for _, name := range c.Devices {
			checks, _, err := c.Consul.Health().Node(name, nil)
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, ch := range checks {
				if ch.Name == contract.CheckConnectivity || ch.Name == contract.CheckSystem {
					n++
				}
			}
			if n < 2 {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("the device agent's node checks are missing on %v", missing)
	})
}

// instance is one device's allocation of an application slot and its
// Consul service instance.
type instance struct {
	device  string
	allocID string
	port    int
	// checks are the instance's own checks (Nomad's and the agent's), by
	// name: status and output.
	checks map[string]*consul.HealthCheck
}

// slotInstances returns, by device name, the running allocation of the
// application's slot job on every device that has one, with the Consul
// checks of its service instance.
func slotInstances(c *testcluster.Cluster, app, slot string) (map[string]*instance, error) {
	allocs, _, err := c.Nomad.Jobs().Allocations(app+"-"+slot, false, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*instance{}
	for _, a := range allocs {
		if a.DesiredStatus != "run" || a.ClientStatus != "running" {
			continue
		}
		if prev := out[a.NodeName]; prev != nil {
			// Two live allocations on one device: report neither as
			// settled.
			prev.allocID = "(several)"
			continue
		}
		out[a.NodeName] = &instance{device: a.NodeName, allocID: a.ID, checks: map[string]*consul.HealthCheck{}}
	}
	entries, _, err := c.Consul.Health().Service("edgeinfer", "fleetplan-slot="+slot, false, nil)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		in := out[e.Node.Node]
		if in == nil || !strings.Contains(e.Service.ID, in.allocID) {
			continue
		}
		in.port = e.Service.Port
		for _, ch := range e.Checks {
			if ch.ServiceID == e.Service.ID {
				in.checks[ch.Name] = ch
			}
		}
	}
	return out, nil
}

// settled says what keeps an instance from being "on the version and
// passing": its node meta must name the slot, its Consul checks (Nomad's
// application check and the agent's layers 3 and 4) must all pass and the
// application must answer healthy with the version. "" when it is.
func settled(c *testcluster.Cluster, app, slot, version string, in *instance) string {
	if in == nil {
		return "no running allocation in slot " + slot
	}
	if in.allocID == "(several)" {
		return "several running allocations in slot " + slot
	}
	for _, name := range []string{contract.CheckApplication, contract.CheckVersionMetrics, contract.CheckFunctional} {
		ch := in.checks[name]
		if ch == nil {
			return fmt.Sprintf("check %q not registered", name)
		}
		if ch.Status != consul.HealthPassing {
			return fmt.Sprintf("check %q is %s", name, ch.Status)
		}
	}
	nodes, _, err := c.Nomad.Nodes().List(&nomad.QueryOptions{Filter: `Name == "` + in.device + `"`})
	if err != nil || len(nodes) != 1 {
		return fmt.Sprintf("node %s: %v", in.device, err)
	}
	node, _, err := c.Nomad.Nodes().Info(nodes[0].ID, nil)
	if err != nil {
		return err.Error()
	}
	if s := node.Meta["fleetplan."+app+".slot"]; s != slot {
		return fmt.Sprintf("node meta names slot %q", s)
	}
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get(fmt.Sprintf("http://127.0.0.1:%d/health", in.port))
	if err != nil {
		return err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var h struct{ Status, Version string }
	_ = json.Unmarshal(body, &h)
	if resp.StatusCode != 200 || h.Status != "healthy" || h.Version != version {
		return fmt.Sprintf("answers %d %s %s, want healthy %s", resp.StatusCode, h.Status, h.Version, version)
	}
	return ""
}

// waitSettled waits until every device runs the slot's version with all its
// checks passing (and the device agent's summary with the application's
// memory, which trend detection needs as a baseline).
func waitSettled(t *testing.T, c *testcluster.Cluster, devices []string, app, slot, version string) {
	t.Helper()
	testcluster.Eventually(t, 90*time.Second, func() (bool, string) {
		ins, err := slotInstances(c, app, slot)
		if err != nil {
			return false, err.Error()
		}
		var problems []string
		for _, d := range devices {
			msg := settled(c, app, slot, version, ins[d])
			if msg == "" {
				// The device agent measured the application's memory (its
				// baseline): its summary of this version has it.
				kv, _, err := c.Consul.KV().Get(contract.SummaryKey("", app, d), nil)
				if err != nil || kv == nil {
					msg = fmt.Sprintf("no device summary yet (%v)", err)
				} else if s, err := contract.DecodeSummary(kv.Value); err != nil || s.Version != version || s.Current == nil || s.Current.RSSMB == nil {
					msg = "the device summary has no memory measurement of " + version + ": " + string(kv.Value)
				}
			}
			if msg != "" {
				problems = append(problems, d+": "+msg)
			}
		}
		return len(problems) == 0, strings.Join(problems, "; ")
	})
}

// restoreWatch follows, while a rollout runs, the devices that leave an
// application's stable slot (their allocation there stops) and records when
// each is back: running the stable version in that slot with every check
// passing.
type restoreWatch struct {
	mu       sync.Mutex
	left     map[string]time.Time
	restored map[string]time.Time
	last     map[string]string // why a device that left is not back yet
	stop     chan struct{}
	done     chan struct{}
}

func watchRestore(c *testcluster.Cluster, devices []string, app, slot, version string) *restoreWatch {
	w := &restoreWatch{left: map[string]time.Time{}, restored: map[string]time.Time{}, last: map[string]string{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			now := time.Now()
			if ins, err := slotInstances(c, app, slot); err == nil {
				for _, d := range devices {
					in := ins[d]
					w.mu.Lock()
					_, gone := w.left[d]
					_, back := w.restored[d]
					w.mu.Unlock()
					switch {
					case !gone && (in == nil || in.allocID == "(several)"):
						w.mu.Lock()
						w.left[d] = now
						w.mu.Unlock()
					case gone && !back:
						msg := settled(c, app, slot, version, in)
						w.mu.Lock()
						if msg == "" {
							w.restored[d] = now
						}
						w.last[d] = msg
						w.mu.Unlock()
					}
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

// wait waits until every device that left is back (or the timeout) and
// stops the watch. It returns the devices that left, with when each left
// and came back (zero when it did not).
func (w *restoreWatch) wait(t *testing.T, timeout time.Duration, devices ...string) (left, restored map[string]time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		pending := []string{}
		for d := range w.left {
			if len(devices) > 0 && !contains(devices, d) {
				continue
			}
			if _, ok := w.restored[d]; !ok {
				pending = append(pending, fmt.Sprintf("%s (%s)", d, w.last[d]))
			}
		}
		w.mu.Unlock()
		if len(pending) == 0 || time.Now().After(deadline) {
			if len(pending) > 0 {
				t.Errorf("not back on the stable slot after %s: %v", timeout, pending)
			}
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	left, restored = map[string]time.Time{}, map[string]time.Time{}
	for d, at := range w.left {
		left[d] = at
		restored[d] = w.restored[d]
	}
	return left, restored
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// deployableDevices returns the devices a rollout may switch (registry
// status ok): a device another test left quarantined is not planned.
func deployableDevices(t *testing.T, ctx context.Context, c *testcluster.Cluster) []string {
	t.Helper()
	res := fleetplan(t, ctx, "registry", "list", "-json")
	var devs []struct {
		Name     string `json:"name"`
		Status   string `json:"status"`
		Reason   string `json:"reason"`
		Resolved bool   `json:"resolved"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &devs); err != nil {
		t.Fatalf("registry list -json: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	var out []string
	for _, d := range devs {
		if !contains(c.Devices, d.Name) {
			continue
		}
		if d.Status == "ok" || (d.Status == "discrepancy" && d.Resolved) {
			out = append(out, d.Name)
		} else {
			t.Logf("device %s is %s (%s): not in the fleet of this test", d.Name, d.Status, d.Reason)
		}
	}
	sort.Strings(out)
	return out
}

// auditRec is one record of `fleetplan audit -json`.
type auditRec struct {
	Time    time.Time `json:"time"`
	Run     string    `json:"run"`
	Phase   string    `json:"phase"`
	Wave    string    `json:"wave"`
	Device  string    `json:"device"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail"`
}

// auditTrail returns the application's audit records of the run, oldest
// first.
func auditTrail(t *testing.T, ctx context.Context, app, run string) []auditRec {
	t.Helper()
	res := fleetplan(t, ctx, "audit", "-json", "-rollout", app)
	var all []auditRec
	if err := json.Unmarshal([]byte(res.stdout), &all); err != nil {
		t.Fatalf("audit -json: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	var out []auditRec
	for _, r := range all {
		if r.Run == run {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out
}

// find returns the first record after from that matches.
func find(recs []auditRec, from time.Time, match func(auditRec) bool) (auditRec, bool) {
	for _, r := range recs {
		if !r.Time.Before(from) && match(r) {
			return r, true
		}
	}
	return auditRec{}, false
}

// rolloutStatus is the part of `fleetplan status -json` the tests read.
type rolloutStatus struct {
	State struct {
		Outcome string `json:"outcome"`
	} `json:"state"`
	Rollout struct {
		ID             string `json:"id"`
		RollbackReason string `json:"rollback_reason"`
	} `json:"rollout"`
	Devices []struct {
		Name   string `json:"name"`
		Stage  int    `json:"stage"`
		State  string `json:"state"`
		Layer  int    `json:"layer"`
		Reason string `json:"reason"`
	} `json:"devices"`
	Analysis  string `json:"failure_analysis"`
	Decisions []struct {
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
	} `json:"decisions"`
}

func statusOf(t *testing.T, ctx context.Context, app string) rolloutStatus {
	t.Helper()
	res := fleetplan(t, ctx, "status", "-json", app)
	var st rolloutStatus
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status -json: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	return st
}
