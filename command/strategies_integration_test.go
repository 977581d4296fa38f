//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/jobs"
)

// strategyPolicy writes a lean policy of the demo application with a
// strategy: auto-approved canary, short soaks, one failure fails the gate.
func strategyPolicy(t *testing.T, dir, app, strategy, version string, env map[string]string, maxParallel int, canarySoak string) string {
	t.Helper()
	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	// A rolling-update has no approval step by default: the policy says
	// nothing; the others approve automatically (apply runs unattended).
	approval := "    approval = \"auto\"\n"
	if strategy == "rolling-update" {
		approval = ""
	}
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
  strategy     = %q
  max_parallel = %d
  canary {
    percent  = 5
    soak     = %q
%s  }
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
    scope               = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, app, jobspec, version, envLines.String(), strategy, maxParallel, canarySoak, approval)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", app, version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// liveEntries returns the application's live entries by device.
func liveEntries(c *testcluster.Cluster, app string) (map[string][]*consul.AgentService, error) {
	node, _, err := c.Consul.Catalog().Node(jobs.TrafficNode, nil)
	if err != nil {
		return nil, err
	}
	out := map[string][]*consul.AgentService{}
	if node == nil {
		return out, nil
	}
	for _, s := range node.Services {
		if s.Meta["fleetplan_app"] == app {
			out[s.Meta[jobs.MetaDevice]] = append(out[s.Meta[jobs.MetaDevice]], s)
		}
	}
	return out, nil
}

// slotWatch samples, while a rollout runs, each device's running
// allocations of the application and its live entries.
type slotWatch struct {
	mu sync.Mutex
	// maxAllocs is the most running allocations seen on a device at once.
	maxAllocs map[string]int
	// liveSeen: a device had a live entry; liveViolations: a moment with
	// two live entries for a device, or none after it had one.
	liveSeen       map[string]bool
	liveViolations []string
	samples        int
	stop, done     chan struct{}
}

func watchSlots(c *testcluster.Cluster, app string, traffic bool) *slotWatch {
	w := &slotWatch{maxAllocs: map[string]int{}, liveSeen: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			counts := map[string]int{}
			var ok bool
			for _, slot := range []string{"blue", "green"} {
				allocs, _, err := c.Nomad.Jobs().Allocations(app+"-"+slot, false, nil)
				if err != nil {
					ok = false
					break
				}
				ok = true
				for _, a := range allocs {
					if a.DesiredStatus == "run" && a.ClientStatus == "running" {
						counts[a.NodeName]++
					}
				}
			}
			var live map[string][]*consul.AgentService
			if traffic {
				var err error
				if live, err = liveEntries(c, app); err != nil {
					ok = false
				}
			}
			w.mu.Lock()
			if ok {
				w.samples++
				for d, n := range counts {
					w.maxAllocs[d] = max(w.maxAllocs[d], n)
				}
				for _, d := range c.Devices {
					if !traffic {
						continue
					}
					n := len(live[d])
					switch {
					case n > 1:
						w.liveViolations = append(w.liveViolations, fmt.Sprintf("%s: %d live entries at %s", d, n, time.Now().Format("15:04:05.000")))
					case n == 0 && w.liveSeen[d]:
						w.liveViolations = append(w.liveViolations, fmt.Sprintf("%s: no live entry at %s", d, time.Now().Format("15:04:05.000")))
					case n == 1:
						w.liveSeen[d] = true
					}
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *slotWatch) finish() {
	close(w.stop)
	<-w.done
}

// liveSRV asks Consul's DNS interface for live.edgeinfer.service.consul.
func liveSRV(ctx context.Context) ([]*net.SRV, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", "127.0.0.1:8600")
	}}
	_, srvs, err := r.LookupSRV(ctx, "", "", "live.edgeinfer.service.consul")
	return srvs, err
}

// assertLiveOn checks that every device has exactly one live entry, on the
// slot's instance (its service ID and port), and that Consul DNS answers
// those ports for live.edgeinfer.service.consul.
func assertLiveOn(t *testing.T, ctx context.Context, c *testcluster.Cluster, app, slot string) {
	t.Helper()
	ins, err := slotInstances(c, app, slot)
	if err != nil {
		t.Fatal(err)
	}
	live, err := liveEntries(c, app)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[int]bool{}
	for _, d := range c.Devices {
		in := ins[d]
		if in == nil || len(live[d]) != 1 {
			t.Errorf("%s: instance %v, %d live entries; want one live entry on slot %s", d, in, len(live[d]), slot)
			continue
		}
		e := live[d][0]
		if !strings.Contains(e.Meta[jobs.MetaInstance], in.allocID) || e.Port != in.port || !contains(e.Tags, "live") {
			t.Errorf("%s: live entry %s port %d tags %v, want the %s instance (alloc %s, port %d) tagged live", d, e.Meta[jobs.MetaInstance], e.Port, e.Tags, slot, in.allocID, in.port)
		}
		ports[in.port] = true
	}
	// What DNS answers for live.edgeinfer.service.consul: the instances
	// tagged live whose checks pass.
	entries, _, err := c.Consul.Health().Service("edgeinfer", "live", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for _, e := range entries {
		got[e.Service.Port] = true
	}
	if srvs, err := liveSRV(ctx); err == nil {
		got = map[int]bool{}
		for _, s := range srvs {
			got[int(s.Port)] = true
		}
	} else {
		// The dev cluster runs Consul with dns = -1 (dev-cluster/cluster.sh).
		t.Logf("Consul DNS not served on 127.0.0.1:8600 (%v): checked /v1/health/service/edgeinfer?tag=live&passing, the same selection", err)
	}
	for p := range ports {
		if !got[p] {
			t.Errorf("live.edgeinfer.service.consul answers ports %v, lacks the %s instance port %d", got, slot, p)
		}
	}
}

// reportOf reads `fleetplan report -format json`.
type strategyReport struct {
	Strategy      string `json:"strategy"`
	Outcome       string `json:"outcome"`
	RollbackTimes *struct {
		TrafficBack      float64 `json:"traffic_back_seconds"`
		CandidateStopped float64 `json:"candidate_stopped_seconds"`
		Devices          int     `json:"devices"`
	} `json:"rollback_times"`
}

func reportOf(t *testing.T, ctx context.Context, app string) strategyReport {
	t.Helper()
	res := fleetplan(t, ctx, "report", "-format", "json", app)
	var rep strategyReport
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil {
		t.Fatalf("report -format json: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	return rep
}

func cleanupTraffic(t *testing.T, c *testcluster.Cluster, app string) {
	t.Cleanup(func() {
		live, _ := liveEntries(c, app)
		for _, es := range live {
			for _, e := range es {
				_, _ = c.Consul.Catalog().Deregister(&consul.CatalogDeregistration{Node: jobs.TrafficNode, ServiceID: e.ID}, nil)
			}
		}
	})
}

// TestIntegrationBlueGreen: a good release switches the traffic (two
// allocations per device only in the standby window, exactly one live
// entry per device at every moment, DNS answers the candidate), a release
// that turns unhealthy after taking the traffic is rolled back with the
// traffic back first.
func TestIntegrationBlueGreen(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-bluegreen"
	cleanup(t, c, app)
	cleanupTraffic(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	res := fleetplan(t, ctx, "apply", "-auto-approve", strategyPolicy(t, dir, app, "blue-green", "1.0.0", nil, 6, "6s"))
	if res.code != 0 {
		t.Fatalf("installing 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "blue", "1.0.0")
	assertLiveOn(t, ctx, c, app, "blue")

	plan := fleetplan(t, ctx, "plan", strategyPolicy(t, dir, app, "blue-green", "2.0.0", nil, 6, "6s"))
	if !strings.Contains(plan.stdout, "Strategy: blue-green (lowest risk") || !strings.Contains(plan.stdout, "room for two slots on every device") {
		t.Errorf("plan does not show the strategy's risk and the double resource use:\n%s\n%s", plan.stdout, plan.stderr)
	}

	w := watchSlots(c, app, true)
	res = fleetplan(t, ctx, "apply", "-auto-approve", strategyPolicy(t, dir, app, "blue-green", "2.0.0", nil, 6, "6s"))
	w.finish()
	if res.code != 0 {
		t.Fatalf("rolling out 2.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "green", "2.0.0")
	assertLiveOn(t, ctx, c, app, "green")
	both := 0
	for _, d := range c.Devices {
		if w.maxAllocs[d] > 2 {
			t.Errorf("%s ran %d allocations of %s at once", d, w.maxAllocs[d], app)
		}
		if w.maxAllocs[d] == 2 {
			both++
		}
	}
	if both == 0 {
		t.Errorf("no device was seen with its hot standby (2 allocations) in %d samples", w.samples)
	}
	for _, v := range w.liveViolations {
		t.Error(v)
	}
	if rep := reportOf(t, ctx, app); rep.Strategy != "blue-green" || rep.Outcome != "succeeded" {
		t.Errorf("report: strategy %q outcome %q", rep.Strategy, rep.Outcome)
	}

	// 3.0.0 passes its checks, takes the traffic, then turns unhealthy.
	w = watchSlots(c, app, true)
	res = fleetplan(t, ctx, "apply", "-auto-approve", strategyPolicy(t, dir, app, "blue-green", "3.0.0",
		map[string]string{"EDGEINFER_FAULT_UNHEALTHY_AFTER": "9s"}, 6, "20s"))
	w.finish()
	if res.code != 1 {
		t.Fatalf("rolling out 3.0.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "green", "2.0.0")
	assertLiveOn(t, ctx, c, app, "green")
	for _, v := range w.liveViolations {
		t.Error(v)
	}
	rep := reportOf(t, ctx, app)
	if rep.Outcome != "rolled-back" || rep.RollbackTimes == nil {
		t.Fatalf("report after the rollback: %+v", rep)
	}
	rt := rep.RollbackTimes
	if rt.Devices == 0 || rt.TrafficBack <= 0 || rt.CandidateStopped < rt.TrafficBack {
		t.Errorf("rollback times %+v: want the traffic back (measured) before the candidate stopped", *rt)
	}
	t.Logf("blue-green rollback on %d device(s): trigger -> traffic back %.3f s; trigger -> candidate stopped %.3f s", rt.Devices, rt.TrafficBack, rt.CandidateStopped)
	md := fleetplan(t, ctx, "report", app)
	if !strings.Contains(md.stdout, "**Rollback times**") {
		t.Errorf("the report does not show the rollback times:\n%s", md.stdout)
	}
}

// TestIntegrationRollingUpdate: one allocation per device at every moment,
// batches of max_parallel, a good release goes through without an
// approval step, a crashing one is rolled back.
func TestIntegrationRollingUpdate(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-rolling"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	res := fleetplan(t, ctx, "apply", "-auto-approve", strategyPolicy(t, dir, app, "rolling-update", "1.0.0", nil, 6, "4s"))
	if res.code != 0 {
		t.Fatalf("installing 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "blue", "1.0.0")

	plan := fleetplan(t, ctx, "plan", strategyPolicy(t, dir, app, "rolling-update", "2.0.0", nil, 2, "4s"))
	if !strings.Contains(plan.stdout, "medium risk") || !strings.Contains(plan.stdout, "batch 1") {
		t.Errorf("plan does not show the medium risk and the batches:\n%s\n%s", plan.stdout, plan.stderr)
	}

	// No -auto-approve: a rolling-update has no approval step.
	w := watchSlots(c, app, false)
	res = fleetplan(t, ctx, "apply", strategyPolicy(t, dir, app, "rolling-update", "2.0.0", nil, 2, "4s"))
	w.finish()
	if res.code != 0 {
		t.Fatalf("rolling out 2.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "green", "2.0.0")
	for _, d := range c.Devices {
		if w.maxAllocs[d] > 1 {
			t.Errorf("%s ran %d allocations of %s at once; rolling-update runs one", d, w.maxAllocs[d], app)
		}
	}
	st := statusOf(t, ctx, app)
	batches := map[int]int{}
	for _, d := range st.Devices {
		batches[d.Stage]++
	}
	for stage, n := range batches {
		if stage > 0 && n > 2 {
			t.Errorf("batch %d switched %d devices, max_parallel is 2", stage, n)
		}
	}
	if rep := reportOf(t, ctx, app); rep.Strategy != "rolling-update" || rep.Outcome != "succeeded" {
		t.Errorf("report: strategy %q outcome %q", rep.Strategy, rep.Outcome)
	}

	res = fleetplan(t, ctx, "apply", strategyPolicy(t, dir, app, "rolling-update", "3.0.0", map[string]string{"EDGEINFER_FAULT_CRASH": "1"}, 2, "4s"))
	if res.code != 1 {
		t.Fatalf("rolling out a crashing 3.0.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "green", "2.0.0")
	if rep := reportOf(t, ctx, app); rep.Outcome != "rolled-back" || rep.RollbackTimes == nil || rep.RollbackTimes.CandidateStopped <= 0 {
		t.Errorf("report after the rollback: %+v", rep)
	}
}
