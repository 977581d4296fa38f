//go:build integration

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/scheduler"
)

// TestAgentOnDevCluster installs the device agent on the real dev cluster
// next to a test application of its own (unique name, its own KV prefix,
// agent limited to it with -app so that other tests' applications get no
// checks from it), and checks what Consul shows per device:
//
//  1. slot blue, version 1.0.0, healthy: fleetplan L1 connectivity, L2
//     system and L3 version and metrics pass, the L3 output has the health
//     JSON (version 1.0.0) and no metrics line (the numbers are in the
//     summary);
//  2. slot green, version 2.0.0 with EDGEINFER_FAULT_WRONG_OUTPUT=1 and a
//     functional block in the config: fleetplan L4 functional is critical
//     on green with an output naming the wrong field, passing on blue;
//  3. purging the agent job removes its checks (graceful stop).
//
// Between 1 and 2 a summary request makes every device write its summary;
// after 2, blue is redeployed serving only Prometheus metrics with half its
// requests failing and each 300 ms slow: the agent judges the error rate
// (layer 3 critical) and the p95 (layer 4) from the counters and the
// histogram.
//
// Everything it made is purged at the end; the cluster keeps running.
func TestAgentOnDevCluster(t *testing.T) {
	c := testcluster.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	app := fmt.Sprintf("atest-%d", time.Now().UnixNano()%1_000_000)
	prefix := "fleetplan-test/" + app + "/agent/apps"
	agentJobID := contract.AgentJobID + "-" + app
	wo := func() *nomadapi.WriteOptions { return (&nomadapi.WriteOptions{}).WithContext(ctx) }

	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		w := (&nomadapi.WriteOptions{}).WithContext(cctx)
		for _, id := range []string{agentJobID, contract.SlotJobID(app, "blue"), contract.SlotJobID(app, "green")} {
			if _, _, err := c.Nomad.Jobs().Deregister(id, true, w); err != nil {
				t.Logf("cleanup: purging %s: %v", id, err)
			}
		}
		if _, err := c.Consul.KV().DeleteTree("fleetplan-test/"+app+"/", (&consulapi.WriteOptions{}).WithContext(cctx)); err != nil {
			t.Logf("cleanup: deleting KV: %v", err)
		}
		if _, err := c.Consul.KV().DeleteTree(contract.SummaryFolder("", app), (&consulapi.WriteOptions{}).WithContext(cctx)); err != nil {
			t.Logf("cleanup: deleting the summaries: %v", err)
		}
	})

	// The devices this test expects the agent on: ready now.
	devices := readyDevices(t, c)
	if len(devices) == 0 {
		t.Fatal("no ready device")
	}
	t.Logf("devices: %v", devices)
	installBinary(t, c, devices[0])

	// 1. The agent, then the application (blue) and its config.
	aj := jobs.AgentJob(jobs.AgentJobOptions{
		JobID:    agentJobID,
		KVPrefix: prefix,
		// The dev cluster's devices share one busy host: its CPU says
		// nothing about a device. Policies may still set a CPU limit.
		ExtraArgs: []string{"-app", app, "-default-system", "cpu=off", "-check-interval", "2s"},
		Env:       map[string]string{"FLEETPLAN_LOG_LEVEL": "debug"},
		Meta:      map[string]string{"owner": "agent integration test"},
	})
	if _, _, err := c.Nomad.Jobs().Register(aj, wo()); err != nil {
		t.Fatalf("registering the agent job: %v", err)
	}
	p := testPolicy(app)
	if err := agent.WriteAppConfig(ctx, c.Consul.KV(), prefix, p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Nomad.Jobs().Register(appJob(app, "blue", "1.0.0", nil), wo()); err != nil {
		t.Fatalf("registering the blue app job: %v", err)
	}
	waitRunning(t, c, agentJobID, devices)
	waitRunning(t, c, contract.SlotJobID(app, "blue"), devices)

	start := time.Now()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return everyDevice(t, c, app, devices, func(node string, e *consulapi.ServiceEntry, cs map[string]*consulapi.HealthCheck) string {
			if slot(e) != "blue" {
				return ""
			}
			for _, name := range []string{contract.CheckConnectivity, contract.CheckSystem, contract.CheckVersionMetrics} {
				hc := cs[name]
				if hc == nil {
					return fmt.Sprintf("%s: no %q check yet", node, name)
				}
				if hc.Status != consulapi.HealthPassing {
					return fmt.Sprintf("%s: %q is %s: %s", node, name, hc.Status, hc.Output)
				}
				if hc.Notes == "" {
					return fmt.Sprintf("%s: %q has no notes", node, name)
				}
			}
			out := cs[contract.CheckVersionMetrics].Output
			if _, v, ok := checks.ParseCheckOutput(out); !ok || v != "1.0.0" {
				return fmt.Sprintf("%s: the watcher reads version %q from the L3 output %q", node, v, out)
			}
			if _, ok := contract.ParseMetrics(out); ok {
				return fmt.Sprintf("%s: the L3 output streams a metrics line: %q", node, out)
			}
			if cs[contract.CheckFunctional] != nil {
				return fmt.Sprintf("%s: a functional check without a functional block", node)
			}
			return ""
		})
	})
	t.Logf("layers 1-3 passing on %d devices after %s", len(devices), time.Since(start).Round(time.Second))
	logChecks(t, c, app, devices[0])

	// 1b. A summary request: every device writes its summary once.
	writeConfig(t, ctx, c, prefix, p, "req-1")
	start = time.Now()
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		for _, d := range stillReady(t, c, devices) {
			key := contract.SummaryKey("", app, d)
			kv, _, err := c.Consul.KV().Get(key, (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil || kv == nil {
				return false, fmt.Sprintf("%s: no summary at %s yet (%v)", d, key, err)
			}
			s, err := contract.DecodeSummary(kv.Value)
			if err != nil {
				return false, err.Error()
			}
			if s.Request != "req-1" || s.Version != "1.0.0" || s.Current == nil || s.Current.RSSMB == nil || s.Window == nil || s.Window.Samples < 1 ||
				s.Layers[contract.LayerApplication].Status != "passing" {
				return false, fmt.Sprintf("%s: summary %s", d, kv.Value)
			}
		}
		return true, ""
	})
	if kv, _, err := c.Consul.KV().Get(contract.SummaryKey("", app, devices[0]), nil); err == nil && kv != nil {
		t.Logf("summaries written after %s; %s: %d bytes: %s", time.Since(start).Round(time.Second), devices[0], len(kv.Value), kv.Value)
	}

	// 1b. A re-check on demand (`fleetplan recheck`): the devices named
	// answer at once with a fresh summary; the others ignore it.
	if len(devices) >= 2 {
		w := checks.NewWatcher(c.Nomad, c.Consul, hclog.NewNullLogger(), checks.WithConfig(checks.Config{AgentConfigFolder: prefix}))
		named := devices[:2]
		rstart := time.Now()
		rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
		got, err := w.Recheck(rctx, app, named)
		rcancel()
		w.Stop()
		if err != nil {
			t.Fatalf("re-check of %v: %v", named, err)
		}
		for _, d := range named {
			s, ok := got[d]
			if !ok {
				t.Errorf("%s did not answer the re-check (answers: %v)", d, slices.Sorted(maps.Keys(got)))
				continue
			}
			if s.Version != "1.0.0" || s.Node != d || s.Layers[contract.LayerApplication].Status != consulapi.HealthPassing || !strings.HasPrefix(s.Request, "recheck-") {
				t.Errorf("%s's re-check answer: %+v", d, s)
			}
		}
		t.Logf("re-check of %v answered in %s", named, time.Since(rstart).Round(10*time.Millisecond))
		for _, d := range devices[2:] {
			kv, _, err := c.Consul.KV().Get(contract.SummaryKey("", app, d), (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil || kv == nil {
				continue
			}
			if s, err := contract.DecodeSummary(kv.Value); err == nil && strings.HasPrefix(s.Request, "recheck-") {
				t.Errorf("%s, not named, answered the re-check: %+v", d, s)
			}
		}
	}

	// 2. A functional block, and a green release that answers wrongly.
	p.Health.Functional = &scheduler.Functional{
		Probe: "http-json", Path: "/infer", Input: `{"image":"cat.jpg"}`,
		Expect: map[string]string{"label": "cat"}, MaxLatency: 2 * time.Second, Interval: 2 * time.Second,
	}
	if err := agent.WriteAppConfig(ctx, c.Consul.KV(), prefix, p); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Nomad.Jobs().Register(appJob(app, "green", "2.0.0", map[string]string{"EDGEINFER_FAULT_WRONG_OUTPUT": "1"}), wo()); err != nil {
		t.Fatalf("registering the green app job: %v", err)
	}
	waitRunning(t, c, contract.SlotJobID(app, "green"), devices)
	start = time.Now()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return everyDevice(t, c, app, devices, func(node string, e *consulapi.ServiceEntry, cs map[string]*consulapi.HealthCheck) string {
			l4 := cs[contract.CheckFunctional]
			if l4 == nil {
				return fmt.Sprintf("%s/%s: no %q check yet", node, slot(e), contract.CheckFunctional)
			}
			switch slot(e) {
			case "green":
				// A check whose first verdict is critical, the status it
				// was registered with, keeps its empty output in the
				// catalog for up to check_update_interval: the reason is
				// in the device summary (written on the change).
				if why := reasonOf(ctx, c, app, node, contract.LayerFunctional, l4); l4.Status != consulapi.HealthCritical || !strings.Contains(why, `label = "dog", expected "cat"`) {
					return fmt.Sprintf("%s/green: L4 is %s: %q", node, l4.Status, why)
				}
				if l3 := cs[contract.CheckVersionMetrics]; l3 == nil || l3.Status != consulapi.HealthPassing || !strings.Contains(l3.Output, `"version":"2.0.0"`) {
					return fmt.Sprintf("%s/green: L3 should pass with version 2.0.0: %+v", node, l3)
				}
			case "blue":
				if l4.Status != consulapi.HealthPassing {
					return fmt.Sprintf("%s/blue: L4 is %s: %q", node, l4.Status, l4.Output)
				}
			}
			return ""
		})
	})
	t.Logf("layer 4 critical on green (wrong label), passing on blue, on %d devices after %s", len(devices), time.Since(start).Round(time.Second))
	logChecks(t, c, app, devices[0])

	// 2b. Blue serves only Prometheus metrics, with half its requests
	// failing and every one 300 ms slow (the functional probe is its
	// traffic): the agent judges the error rate and the p95 from the
	// Prometheus counters and histogram, and fails blue's layer 3.
	p.Health.Application.Metrics = &scheduler.AppMetrics{Path: "/metrics", Format: "prometheus",
		Requests: "http_requests_total", Errors: `http_requests_total{code=~"5.."}`, Latency: "http_request_duration_seconds"}
	p.Rollback.MaxErrorRate = 0.05
	p.Rollback.MaxP95LatencyIncreasePercent = 100
	p.Health.Functional.MaxLatency = 100 * time.Millisecond
	writeConfig(t, ctx, c, prefix, p, "req-1")
	if _, _, err := c.Nomad.Jobs().Register(appJob(app, "blue", "1.0.0", map[string]string{
		"EDGEINFER_METRICS_FORMAT": "prometheus", "EDGEINFER_FAULT_ERROR_RATE": "0.5", "EDGEINFER_FAULT_SLOW": "300ms"}), wo()); err != nil {
		t.Fatalf("re-registering the blue app job: %v", err)
	}
	waitRunning(t, c, contract.SlotJobID(app, "blue"), devices)
	start = time.Now()
	errRate := regexp.MustCompile(`error rate 0\.[0-9]+ > max_error_rate 0\.05 \(rollback trigger\)`)
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return everyDevice(t, c, app, devices, func(node string, e *consulapi.ServiceEntry, cs map[string]*consulapi.HealthCheck) string {
			if slot(e) != "blue" {
				return ""
			}
			l3 := cs[contract.CheckVersionMetrics]
			if l3 == nil || l3.Status != consulapi.HealthCritical {
				return fmt.Sprintf("%s/blue: L3 should fail on the error rate from the Prometheus counters: %+v", node, l3)
			}
			if why := reasonOf(ctx, c, app, node, contract.LayerApplication, l3); !errRate.MatchString(why) {
				return fmt.Sprintf("%s/blue: L3 fails for another reason: %q", node, why)
			}
			// The latency triggers go to the functional check.
			l4 := cs[contract.CheckFunctional]
			if l4 == nil || l4.Status != consulapi.HealthCritical {
				return fmt.Sprintf("%s/blue: L4 should fail on the p95 from the Prometheus histogram: %+v", node, l4)
			}
			if why := reasonOf(ctx, c, app, node, contract.LayerFunctional, l4); !strings.Contains(why, "p95 latency ") {
				return fmt.Sprintf("%s/blue: L4 fails for another reason: %q", node, why)
			}
			return ""
		})
	})
	t.Logf("layer 3 critical on the Prometheus-only blue (error rate, p95) on %d devices after %s", len(devices), time.Since(start).Round(time.Second))
	logChecks(t, c, app, devices[0])

	// 3. Stopping the agent removes its checks from the still running
	// instances: at once on each device's Consul agent, then in the
	// catalog (the local agents' anti-entropy: at once, or at their next
	// full sync when that write failed, within about two minutes on a busy
	// host).
	if _, _, err := c.Nomad.Jobs().Deregister(agentJobID, true, wo()); err != nil {
		t.Fatalf("purging the agent job: %v", err)
	}
	start = time.Now()
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		entries, _, err := c.Consul.Health().Service(app, "", false, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return false, err.Error()
		}
		for _, e := range entries {
			local, err := consulapi.NewClient(&consulapi.Config{Address: e.Node.Address + ":8500"})
			if err != nil {
				return false, err.Error()
			}
			checks, err := local.Agent().ChecksWithFilterOpts("", (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return false, fmt.Sprintf("%s: reading the local agent's checks: %v", e.Node.Node, err)
			}
			for id, hc := range checks {
				if hc.ServiceID == e.Service.ID && strings.HasPrefix(id, agent.CheckIDPrefix) {
					return false, fmt.Sprintf("%s: %q still registered on the device's Consul agent", e.Node.Node, hc.Name)
				}
			}
		}
		return true, ""
	})
	t.Logf("the agent's checks left the devices' Consul agents after %s", time.Since(start).Round(time.Second))
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		entries, _, err := c.Consul.Health().Service(app, "", false, (&consulapi.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return false, err.Error()
		}
		for _, e := range entries {
			for _, hc := range e.Checks {
				if hc.ServiceID != "" && strings.HasPrefix(hc.CheckID, agent.CheckIDPrefix) {
					return false, fmt.Sprintf("%s: %q still in the catalog", e.Node.Node, hc.Name)
				}
			}
		}
		return true, ""
	})
	t.Logf("and the catalog after %s", time.Since(start).Round(time.Second))
}

// reasonOf is a check's output and the device summary's reason for the
// layer (the newest instance's), joined: statuses propagate at once, an
// output without a status change may lag by check_update_interval.
func reasonOf(ctx context.Context, c *testcluster.Cluster, app, node, layer string, hc *consulapi.HealthCheck) string {
	out := hc.Output
	kv, _, err := c.Consul.KV().Get(contract.SummaryKey("", app, node), (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil || kv == nil {
		return out
	}
	s, err := contract.DecodeSummary(kv.Value)
	if err != nil {
		return out
	}
	return out + " | summary: " + s.Layers[layer].Status + ": " + s.Layers[layer].Reason
}

// writeConfig writes the policy's agent config with a summary request.
func writeConfig(t *testing.T, ctx context.Context, c *testcluster.Cluster, prefix string, p *scheduler.Policy, request string) {
	t.Helper()
	cfg, err := agent.NewAppConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SummaryRequest = request
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Consul.KV().Put(&consulapi.KVPair{Key: agent.AppConfigKey(prefix, p.Name), Value: b}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		t.Fatal(err)
	}
}

// testPolicy is the part of a policy the agent reads.
func testPolicy(app string) *scheduler.Policy {
	return &scheduler.Policy{
		Name: app,
		Health: scheduler.Health{
			Connectivity: scheduler.Connectivity{HeartbeatTimeout: 30 * time.Second},
			Application: scheduler.Application{
				Port: "http", Path: "/health", Interval: 2 * time.Second, Timeout: 2 * time.Second, ExpectVersion: true,
			},
		},
	}
}

// appJob is a slot job of the test application the way jobs.Compile makes
// them (service tags, meta and the Nomad layer 3 check), without the slot
// constraint: it runs on every device.
func appJob(app, slot, version string, env map[string]string) *nomadapi.Job {
	id := contract.SlotJobID(app, slot)
	task := nomadapi.NewTask("app", "raw_exec")
	task.Config = map[string]any{
		"command": "${meta.edge.bin_dir}/edgeinfer",
		"args":    []string{"-addr", "${NOMAD_IP_http}:${NOMAD_PORT_http}"},
	}
	task.Env = env
	task.Resources = &nomadapi.Resources{CPU: new(20), MemoryMB: new(32)}
	g := nomadapi.NewTaskGroup("app", 1)
	g.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: "http"}}}}
	g.Services = []*nomadapi.Service{{
		Name:      app,
		PortLabel: "http",
		Provider:  nomadapi.ServiceProviderConsul,
		Address:   "${NOMAD_IP_http}",
		Tags:      []string{contract.TagSlot + slot, contract.TagVersion + version},
		Meta:      map[string]string{contract.MetaSlot: slot, contract.MetaVersion: version},
		Checks: []nomadapi.ServiceCheck{{
			Name: contract.CheckApplication, Type: "http", Path: "/health", PortLabel: "http",
			Interval: 2 * time.Second, Timeout: time.Second, InitialStatus: "warning",
		}},
	}}
	g.RestartPolicy = &nomadapi.RestartPolicy{Attempts: new(2), Interval: new(time.Minute), Delay: new(2 * time.Second), Mode: new("delay")}
	g.AddTask(task)
	job := nomadapi.NewSystemJob(id, id, "global", 50)
	job.Datacenters = []string{"dc1"}
	job.Meta = map[string]string{contract.MetaApp: app, contract.MetaSlot: slot, contract.MetaVersion: version}
	job.AddTaskGroup(g)
	return job
}

func readyDevices(t *testing.T, c *testcluster.Cluster) []string {
	t.Helper()
	var out []string
	for _, d := range c.Devices {
		if st, _ := c.NodeStatus(d); st == nomadapi.NodeStatusReady {
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return out
}

// stillReady drops the devices that another test took down meanwhile.
func stillReady(t *testing.T, c *testcluster.Cluster, devices []string) []string {
	t.Helper()
	return slices.DeleteFunc(slices.Clone(devices), func(d string) bool {
		st, err := c.NodeStatus(d)
		if err == nil && st != nomadapi.NodeStatusReady {
			t.Logf("%s is %s now (another test?); not expected any more", d, st)
			return true
		}
		return false
	})
}

// installBinary builds fleetplan into the devices' bin folder (node meta
// edge.bin_dir), where the agent job runs it from, as `cluster.sh up` does.
func installBinary(t *testing.T, c *testcluster.Cluster, device string) {
	t.Helper()
	node, _, err := c.Nomad.Nodes().Info(c.NodeID(t, device), nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := node.Meta["edge.bin_dir"]
	if dir == "" {
		t.Fatalf("node %s has no meta edge.bin_dir", device)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".fleetplan-%d.tmp", os.Getpid()))
	cmd := exec.Command("go", "build", "-o", tmp, ".")
	cmd.Dir = c.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("building fleetplan: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "fleetplan")); err != nil {
		t.Fatal(err)
	}
}

// waitRunning waits until the job runs on every device still ready.
func waitRunning(t *testing.T, c *testcluster.Cluster, jobID string, devices []string) {
	t.Helper()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		allocs, _, err := c.Nomad.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			return false, err.Error()
		}
		running := map[string]bool{}
		var failed []string
		for _, a := range allocs {
			switch a.ClientStatus {
			case nomadapi.AllocClientStatusRunning:
				running[a.NodeName] = true
			case nomadapi.AllocClientStatusFailed:
				failed = append(failed, a.NodeName+": "+lastEvent(a))
			}
		}
		for _, d := range stillReady(t, c, devices) {
			if !running[d] {
				return false, fmt.Sprintf("%s not running on %s (failed: %v)", jobID, d, failed)
			}
		}
		return true, ""
	})
}

// lastEvent is the last task event of a stub allocation, for failures.
func lastEvent(a *nomadapi.AllocationListStub) string {
	var out string
	for task, st := range a.TaskStates {
		if n := len(st.Events); n > 0 {
			e := st.Events[n-1]
			out += fmt.Sprintf("%s: %s %s %s ", task, e.Type, e.DisplayMessage, e.Details["validation_error"])
		}
	}
	return out
}

func slot(e *consulapi.ServiceEntry) string {
	for _, tag := range e.Service.Tags {
		if s, ok := strings.CutPrefix(tag, contract.TagSlot); ok {
			return s
		}
	}
	return ""
}

// everyDevice reads the application's Consul health (with the node checks)
// and runs check on every instance of every device still ready, keyed by
// check name; a non-empty answer is what is still missing.
func everyDevice(t *testing.T, c *testcluster.Cluster, app string, devices []string,
	check func(node string, e *consulapi.ServiceEntry, byName map[string]*consulapi.HealthCheck) string) (bool, string) {
	entries, _, err := c.Consul.Health().Service(app, "", false, nil)
	if err != nil {
		return false, err.Error()
	}
	seen := map[string]bool{}
	for _, e := range entries {
		byName := map[string]*consulapi.HealthCheck{}
		for _, hc := range e.Checks {
			byName[hc.Name] = hc
		}
		if msg := check(e.Node.Node, e, byName); msg != "" {
			return false, msg
		}
		seen[e.Node.Node] = true
	}
	for _, d := range stillReady(t, c, devices) {
		if !seen[d] {
			return false, fmt.Sprintf("%s: no instance of %s in Consul", d, app)
		}
	}
	return true, ""
}

func logChecks(t *testing.T, c *testcluster.Cluster, app, device string) {
	t.Helper()
	entries, _, err := c.Consul.Health().Service(app, "", false, nil)
	if err != nil {
		t.Log(err)
		return
	}
	for _, e := range entries {
		if e.Node.Node != device {
			continue
		}
		for _, hc := range e.Checks {
			if checks.CheckLayer(hc.Name) == 0 {
				continue
			}
			t.Logf("%s %s/%s %q %s:\n%s", device, e.Service.Service, slot(e), hc.Name, hc.Status, hc.Output)
		}
	}
}
