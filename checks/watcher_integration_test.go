//go:build integration

package checks

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

const (
	itApp     = "ctest"
	itSlot    = scheduler.SlotBlue
	itService = "fleetplan-ctest"
)

// ctestJob is a small slot job of the demo application, as jobs/ compiles
// them: system job, slot and version in the job meta, tags and the layer-3
// check on the service.
func ctestJob(version string, env map[string]string) *nomadapi.Job {
	id := contract.SlotJobID(itApp, itSlot)
	job := nomadapi.NewSystemJob(id, id, "global", 50)
	job.Datacenters = []string{"dc1"}
	job.Meta = map[string]string{contract.MetaVersion: version, contract.MetaSlot: itSlot}
	app, _, _ := strings.Cut(version, "+")

	tg := nomadapi.NewTaskGroup("app", 1)
	tg.Networks = []*nomadapi.NetworkResource{{DynamicPorts: []nomadapi.Port{{Label: "http"}}}}
	attempts, interval, delay, mode := 2, time.Minute, 2*time.Second, "delay"
	tg.RestartPolicy = &nomadapi.RestartPolicy{Attempts: &attempts, Interval: &interval, Delay: &delay, Mode: &mode}
	tg.Services = []*nomadapi.Service{{
		Name:      itService,
		PortLabel: "http",
		Provider:  "consul",
		Address:   "${NOMAD_IP_http}",
		Tags:      []string{contract.SlotTag(itSlot), contract.VersionTag(app)},
		Meta:      map[string]string{contract.MetaSlot: itSlot, contract.MetaVersion: version},
		Checks: []nomadapi.ServiceCheck{{
			Name:     "fleetplan L3 application",
			Type:     "http",
			Path:     "/health",
			Interval: 2 * time.Second,
			Timeout:  time.Second,
			// As jobs.Compile: a first result that is critical too is a
			// status change, so its output (the version) reaches the
			// servers at once under Consul's default
			// check_update_interval.
			InitialStatus: "warning",
		}},
	}}
	task := nomadapi.NewTask("app", "raw_exec")
	task.Config = map[string]any{
		"command": "${meta.edge.bin_dir}/edgeinfer",
		"args":    []string{"-addr", "${NOMAD_IP_http}:${NOMAD_PORT_http}"},
	}
	task.Env = env
	cpu, mem := 50, 32
	task.Resources = &nomadapi.Resources{CPU: &cpu, MemoryMB: &mem}
	tg.Tasks = []*nomadapi.Task{task}
	job.TaskGroups = []*nomadapi.TaskGroup{tg}
	return job
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func l3(h scheduler.DeviceHealth) *scheduler.CheckResult {
	for i, c := range h.Checks {
		if c.Name == "fleetplan L3 application" {
			return &h.Checks[i]
		}
	}
	return nil
}

func TestWatcherOnDevCluster(t *testing.T) {
	c := testcluster.Require(t)
	jobID := contract.SlotJobID(itApp, itSlot)
	purge := func() {
		if _, _, err := c.Nomad.Jobs().Deregister(jobID, true, nil); err != nil {
			t.Logf("purging %s: %v", jobID, err)
		}
	}
	purge()
	t.Cleanup(purge)

	var devices []scheduler.DeviceRef
	for _, name := range c.Devices {
		devices = append(devices, scheduler.DeviceRef{ID: c.NodeID(t, name), Name: name})
	}
	if _, _, err := c.Nomad.Jobs().Register(ctestJob("1.0.0+t1", nil), nil); err != nil {
		t.Fatalf("register: %v", err)
	}

	level := hclog.Info
	if os.Getenv("CHECKS_DEBUG") != "" {
		level = hclog.Trace
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: level, Output: testWriter{t}})
	w := NewWatcher(c.Nomad, c.Consul, logger)
	t.Cleanup(w.Stop)
	r := &scheduler.Rollout{App: itApp, Candidate: itSlot, Version: "1.0.0"}

	// wait until every device satisfies ok, or fail with the first that
	// does not.
	waitAll := func(what string, timeout time.Duration, ok func(dev scheduler.DeviceRef, h scheduler.DeviceHealth) string) {
		t.Helper()
		start := time.Now()
		var last string
		var waits []string // what was awaited, as it changed
		testcluster.Eventually(t, timeout, func() (bool, string) {
			msg := ""
			defer func() {
				if msg != "" && msg != last {
					last = msg
					waits = append(waits, fmt.Sprintf("%s: %s", time.Since(start).Round(time.Millisecond), msg))
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hs, err := w.Health(ctx, r, devices)
			if err != nil {
				msg = err.Error()
				return false, msg
			}
			for _, d := range devices {
				if m := ok(d, hs[d.ID]); m != "" {
					msg = d.Name + ": " + m
					if hs[d.ID].Alloc == nil {
						// Tell a slow watch from a slow Nomad.
						msg += " (Nomad: " + directAllocs(c.Nomad, jobID, d.ID) + ")"
					}
					return false, fmt.Sprintf("%s: %+v", msg, hs[d.ID])
				}
			}
			return true, ""
		})
		if took := time.Since(start); took > 5*time.Second {
			t.Logf("%s after %s; waited for:\n  %s", what, took.Round(time.Millisecond), strings.Join(waits, "\n  "))
		} else {
			t.Logf("%s after %s", what, took.Round(time.Millisecond))
		}
	}

	healthyV1 := func(d scheduler.DeviceRef, h scheduler.DeviceHealth) string {
		switch c := l3(h); {
		case !h.Online:
			return "offline"
		case h.Alloc == nil:
			return "no allocation"
		case h.Alloc.Status != "running":
			return "allocation " + h.Alloc.Status
		case h.Alloc.Version != "1.0.0+t1":
			return "allocation version"
		case c == nil || c.Status != "passing" || c.Layer != 3:
			return "L3 not passing"
		case h.Version != "1.0.0":
			return "reported version"
		}
		return ""
	}
	waitAll("v1 running and passing everywhere", 90*time.Second, healthyV1)

	// The checks carry serfHealth (layer 1) and the application check (and
	// the device agent's layer checks when it runs on the cluster).
	hs, err := w.Health(context.Background(), r, devices)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devices {
		h := hs[d.ID]
		var serf *scheduler.CheckResult
		for i, c := range h.Checks {
			if c.Name == contract.SerfHealthCheck {
				serf = &h.Checks[i]
			}
			if i > 0 && c.Layer < h.Checks[i-1].Layer {
				t.Errorf("%s: checks not ordered by layer: %+v", d.Name, h.Checks)
			}
		}
		if serf == nil || serf.Layer != 1 || serf.Status != "passing" {
			t.Errorf("%s: serfHealth: %+v", d.Name, h.Checks)
		}
		if h.Alloc.Restarts != 0 {
			t.Errorf("%s restarts: %d", d.Name, h.Alloc.Restarts)
		}
	}

	// Health answers from the caches: 50 calls make no network call beyond
	// what the watches do on their own, and the watches' rate does not
	// depend on the number of devices.
	loops := 3 // nodes, checks, allocations
	if n := w.OpenLongPolls(); n > loops {
		t.Errorf("%d long-polls open, want at most %d", n, loops)
	}
	f0, t0 := w.fetches(), time.Now()
	for range 50 {
		if _, err := w.Health(context.Background(), r, devices); err != nil {
			t.Fatal(err)
		}
	}
	elapsed := time.Since(t0)
	if d, max := w.fetches()-f0, uint64(loops)*(uint64(elapsed/DefaultConfig().MinInterval)+1); d > max {
		t.Errorf("50 Health calls in %s: %d fetches, want <= %d", elapsed, d, max)
	}
	t.Logf("50 Health calls in %s", elapsed)
	f0, t0 = w.fetches(), time.Now()
	time.Sleep(4 * time.Second)
	elapsed = time.Since(t0)
	perLoop := float64(w.fetches()-f0) / float64(loops) / elapsed.Seconds()
	if maxRate := 1/DefaultConfig().MinInterval.Seconds() + 0.5; perLoop > maxRate {
		t.Errorf("%.1f calls per watch per second, want <= %.1f", perLoop, maxRate)
	}
	t.Logf("%.2f calls per watch per second over %d devices; %d long-polls open", perLoop, len(devices), w.OpenLongPolls())

	// A release whose health endpoint turns unhealthy after 8 s: L3
	// critical everywhere, the new version seen. Healthy first for a few
	// check intervals, so that the check passes before it fails: under
	// Consul's default check_update_interval a check's output reaches the
	// servers only with a status change, and a first failure while the
	// application still starts (connection refused) would be the output
	// kept.
	if _, _, err := c.Nomad.Jobs().Register(ctestJob("2.0.0+t2", map[string]string{"EDGEINFER_FAULT_UNHEALTHY_AFTER": "8s"}), nil); err != nil {
		t.Fatalf("register v2: %v", err)
	}
	// While v1's allocations end and v2's are placed, no device may read
	// as an ended allocation (a false "exited" verdict).
	ended := map[string]string{}
	waitAll("v2 L3 critical everywhere", 90*time.Second, func(d scheduler.DeviceRef, h scheduler.DeviceHealth) string {
		if h.Alloc != nil && (h.Alloc.Status == "complete" || h.Alloc.Status == "failed" || h.Alloc.Status == "lost") {
			if _, seen := ended[d.Name]; !seen {
				ended[d.Name] = describeAlloc(c.Nomad, h.Alloc.ID)
			}
		}
		switch c := l3(h); {
		case !h.Online:
			return "offline"
		case h.Alloc == nil || h.Alloc.Version != "2.0.0+t2":
			return "not on v2"
		case c == nil || c.Status != "critical":
			return "L3 not critical"
		case h.Version != "2.0.0":
			return "reported version"
		}
		if s, _, _ := ParseCheckOutput(l3(h).Output); s != "unhealthy" {
			return "output status " + s
		}
		return ""
	})

	if len(ended) > 0 {
		t.Errorf("ended allocations reported during the update: %v", ended)
	}

	// A device goes away: offline within the deadline, the others not;
	// then back.
	down := devices[len(devices)-1]
	t0 = time.Now()
	c.DeviceDown(t, down.Name)
	waitAll(down.Name+" offline", 60*time.Second, func(d scheduler.DeviceRef, h scheduler.DeviceHealth) string {
		if (d.ID == down.ID) == h.Online {
			return fmt.Sprintf("online=%v", h.Online)
		}
		return ""
	})
	t.Logf("%s offline seen %s after device-down started", down.Name, time.Since(t0).Round(time.Millisecond))
	c.DeviceUp(t, down.Name)
	waitAll(down.Name+" back online", 90*time.Second, func(d scheduler.DeviceRef, h scheduler.DeviceHealth) string {
		if !h.Online {
			return "offline"
		}
		if h.Alloc == nil {
			return "no allocation"
		}
		return ""
	})
}

// describeAlloc tells an allocation's story for a failure message.
func describeAlloc(nc *nomadapi.Client, id string) string {
	a, _, err := nc.Allocations().Info(id, nil)
	if err != nil {
		return id + ": " + err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s job v%d client=%s (%s) desired=%s (%s)", id, *a.Job.Version, a.ClientStatus, a.ClientDescription, a.DesiredStatus, a.DesiredDescription)
	for name, ts := range a.TaskStates {
		for _, e := range ts.Events {
			fmt.Fprintf(&b, "\n  %s %s %s: %s", time.Unix(0, e.Time).Format("15:04:05.000"), name, e.Type, e.DisplayMessage)
		}
	}
	return b.String()
}

// directAllocs asks Nomad for the job's allocations on a node.
func directAllocs(nc *nomadapi.Client, jobID, nodeID string) string {
	as, _, err := nc.Jobs().Allocations(jobID, false, nil)
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, a := range as {
		if a.NodeID == nodeID {
			out = append(out, fmt.Sprintf("%s %s/%s v%d", a.ID[:8], a.ClientStatus, a.DesiredStatus, a.JobVersion))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}
