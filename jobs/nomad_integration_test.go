//go:build integration

package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

// rig is one test application on the shared dev cluster: its own app name
// (so that other engineers' tests are not disturbed), a parsed base job and
// cleanup that purges its jobs and removes its node metadata.
type rig struct {
	t   *testing.T
	c   *testcluster.Cluster
	app string
	ctx context.Context
	log hclog.Logger
}

func newRig(t *testing.T, name string) *rig {
	t.Helper()
	c := testcluster.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	r := &rig{
		t: t, c: c, ctx: ctx,
		app: fmt.Sprintf("jtest-%s-%d", name, time.Now().UnixNano()%1_000_000),
		log: hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Debug, Output: testWriter{t}}),
	}
	t.Cleanup(r.cleanup)
	return r
}

// nomad returns the cluster handle for a release version of the test app.
func (r *rig) nomad(version string) *Nomad {
	r.t.Helper()
	base, err := ParseJobspec(r.ctx, r.c.Nomad, filepath.Join(r.c.Root, "examples", "edgeinfer.nomad.hcl"))
	if err != nil {
		r.t.Fatal(err)
	}
	// Register the service under the test's own name: other tests watch
	// the real "edgeinfer" service.
	base.TaskGroups[0].Services[0].Name = r.app
	p := &scheduler.Policy{
		Name:    r.app,
		Fleet:   scheduler.Fleet{Selector: `Meta.fleet == "vision"`, Datacenters: []string{"dc1"}},
		Release: scheduler.Release{Version: version, Env: map[string]string{"LOG_LEVEL": "info"}},
		Health: scheduler.Health{Application: scheduler.Application{
			Port: "http", Path: "/health", Interval: time.Second, Timeout: time.Second,
		}},
	}
	n := NewNomad(r.c.Nomad, p, base, r.log)
	return n
}

func (r *rig) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wo := (&api.WriteOptions{}).WithContext(ctx)
	for _, slot := range []string{"blue", "green"} {
		if _, _, err := r.c.Nomad.Jobs().Deregister(contract.SlotJobID(r.app, slot), true, wo); err != nil && !isNotFound(err) {
			r.t.Logf("cleanup: purging %s: %v", contract.SlotJobID(r.app, slot), err)
		}
	}
	nodes, _, err := r.c.Nomad.Nodes().List((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		r.t.Logf("cleanup: listing nodes: %v", err)
		return
	}
	for _, n := range nodes {
		if n.Status != api.NodeStatusReady {
			continue
		}
		// Only where the key is set: every apply makes the client
		// re-register its node, which other tests would see.
		meta, err := r.c.Nomad.Nodes().Meta().Read(n.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			r.t.Logf("cleanup: reading the metadata of %s: %v", n.Name, err)
			continue
		}
		if _, set := meta.Meta[contract.SlotMetaKey(r.app)]; !set {
			continue
		}
		req := &api.NodeMetaApplyRequest{NodeID: n.ID, Meta: map[string]*string{contract.SlotMetaKey(r.app): nil}}
		if _, err := r.c.Nomad.Nodes().Meta().Apply(req, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
			r.t.Logf("cleanup: removing %s from %s: %v", contract.SlotMetaKey(r.app), n.Name, err)
		}
	}
}

// device returns a ready device of the class (the first one by name).
func (r *rig) device(class string) scheduler.DeviceRef {
	r.t.Helper()
	for _, name := range r.c.Devices {
		if !strings.HasPrefix(name, class+"-") {
			continue
		}
		if st, _ := r.c.NodeStatus(name); st == api.NodeStatusReady {
			return scheduler.DeviceRef{ID: r.c.NodeID(r.t, name), Name: name, Class: class}
		}
	}
	r.t.Fatalf("no ready %s device", class)
	return scheduler.DeviceRef{}
}

// live returns the live allocations of the test app by node name and slot.
func (r *rig) live(n *Nomad) map[string][]SlotAlloc {
	r.t.Helper()
	allocs, err := n.Allocations(r.ctx, r.app)
	if err != nil {
		r.t.Fatal(err)
	}
	out := map[string][]SlotAlloc{}
	for _, a := range allocs {
		if a.Live() {
			out[a.NodeName] = append(out[a.NodeName], a)
		}
	}
	return out
}

// placement describes live allocations as "node:slot/status" (sorted).
func placement(live map[string][]SlotAlloc) string {
	var out []string
	for node, as := range live {
		for _, a := range as {
			out = append(out, node+":"+a.Slot+"/"+a.ClientStatus)
		}
	}
	slices.Sort(out)
	return strings.Join(out, " ")
}

// waitPlacement waits until the live allocations are exactly want (the
// same form as placement), all running.
func (r *rig) waitPlacement(n *Nomad, want ...string) {
	r.t.Helper()
	slices.Sort(want)
	testcluster.Eventually(r.t, 60*time.Second, func() (bool, string) {
		got := placement(r.live(n))
		return got == strings.Join(want, " "), fmt.Sprintf("placement %q, want %q", got, strings.Join(want, " "))
	})
}

func (r *rig) allocOn(n *Nomad, node, slot string) SlotAlloc {
	r.t.Helper()
	for _, a := range r.live(n)[node] {
		if a.Slot == slot {
			return a
		}
	}
	r.t.Fatalf("no live %s allocation on %s", slot, node)
	return SlotAlloc{}
}

func (r *rig) jobModifyIndex(slot string) uint64 {
	r.t.Helper()
	job, _, err := r.c.Nomad.Jobs().Info(contract.SlotJobID(r.app, slot), (&api.QueryOptions{}).WithContext(r.ctx))
	if err != nil {
		r.t.Fatal(err)
	}
	return *job.JobModifyIndex
}

// switchTiming measures one device switch end to end: SwitchDevice (meta
// apply + server sees it + old allocation told to stop), then the old
// allocation complete on the client and the new one running.
type switchTiming struct {
	call, oldStopped, newRunning time.Duration
}

func (r *rig) timedSwitch(n *Nomad, dev scheduler.DeviceRef, from, to string) switchTiming {
	r.t.Helper()
	var oldID string
	if from != "" {
		oldID = r.allocOn(n, dev.Name, from).ID
	}
	start := time.Now()
	if err := n.SwitchDevice(r.ctx, dev, from, to); err != nil {
		r.t.Fatal(err)
	}
	tm := switchTiming{call: time.Since(start)}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && (tm.oldStopped == 0 || tm.newRunning == 0) {
		allocs, err := n.Allocations(r.ctx, r.app)
		if err != nil {
			r.t.Fatal(err)
		}
		oldDone := oldID == ""
		for _, a := range allocs {
			if a.ID == oldID && (a.ClientStatus == api.AllocClientStatusComplete || a.ClientStatus == api.AllocClientStatusFailed) {
				oldDone = true
			}
			if to != "" && a.NodeID == dev.ID && a.Slot == to && a.Live() && a.ClientStatus == api.AllocClientStatusRunning && tm.newRunning == 0 {
				tm.newRunning = time.Since(start)
			}
		}
		if to == "" && tm.newRunning == 0 {
			tm.newRunning = -1
		}
		if oldDone && tm.oldStopped == 0 {
			tm.oldStopped = time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if tm.oldStopped == 0 || tm.newRunning == 0 {
		r.t.Fatalf("switch %s %s -> %s not done after 60s: %+v (placement %s)", dev.Name, from, to, tm, placement(r.live(n)))
	}
	running := "n/a"
	if tm.newRunning > 0 {
		running = tm.newRunning.Round(time.Millisecond).String()
	}
	r.t.Logf("TIMING switch %s %q -> %q: SwitchDevice returned after %s, old allocation complete after %s, new allocation running after %s",
		dev.Name, from, to, tm.call.Round(time.Millisecond), tm.oldStopped.Round(time.Millisecond), running)
	return tm
}

// checkPassing waits until the layer 3 check of the app passes on the node
// with the slot's tag.
func (r *rig) checkPassing(node, slot string) {
	r.t.Helper()
	testcluster.Eventually(r.t, 30*time.Second, func() (bool, string) {
		entries, _, err := r.c.Consul.Health().Service(r.app, contract.TagSlot+slot, false, nil)
		if err != nil {
			return false, err.Error()
		}
		for _, e := range entries {
			if e.Node.Node != node {
				continue
			}
			for _, ch := range e.Checks {
				if ch.Name == contract.CheckApplication {
					return ch.Status == "passing", fmt.Sprintf("%s on %s: %s (%s)", contract.CheckApplication, node, ch.Status, ch.Output)
				}
			}
		}
		return false, fmt.Sprintf("no %s service tagged %s%s on %s", r.app, contract.TagSlot, slot, node)
	})
}

// TestSwitchDevices installs a test app on two devices, moves one of them to
// a new version in the other slot and back, runs a blue-green hot standby on
// it, and removes the app again; the other device is never touched.
func TestSwitchDevices(t *testing.T) {
	r := newRig(t, "sw")
	v1 := r.nomad("1.0.0")
	a, b := r.device("jetson"), r.device("rpi")

	// First install into blue on two devices, concurrently.
	if err := v1.PrepareCandidate(r.ctx, &scheduler.Rollout{App: r.app, ID: "r1", Version: "1.0.0", Candidate: "blue"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	// The parallel switches share one watcher of node updates: never more
	// than one long-poll open for both.
	sampled, maxOpen := make(chan struct{}), 0
	done := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := v1.NodeWatcher().OpenLongPolls(); n > maxOpen {
				maxOpen = n
			}
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	for i, dev := range []scheduler.DeviceRef{a, b} {
		wg.Go(func() { errs[i] = v1.SwitchDevice(r.ctx, dev, "", "blue") })
	}
	wg.Wait()
	close(done)
	<-sampled
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if maxOpen != 1 {
		t.Errorf("%d node long-polls open during two parallel switches, want 1", maxOpen)
	}
	r.waitPlacement(v1, a.Name+":blue/running", b.Name+":blue/running")
	r.checkPassing(a.Name, "blue")
	for _, dev := range []scheduler.DeviceRef{a, b} {
		if slot, err := v1.SlotOfNode(r.ctx, dev.ID); err != nil || slot != "blue" {
			t.Fatalf("SlotOfNode(%s) = %q, %v", dev.Name, slot, err)
		}
	}
	bBlue := r.allocOn(v1, b.Name, "blue").ID

	// The candidate 2.0.0 in green; blue's job is left alone.
	v2 := r.nomad("2.0.0")
	blueIndex := r.jobModifyIndex("blue")
	if err := v2.PrepareCandidate(r.ctx, &scheduler.Rollout{App: r.app, ID: "r2", Version: "2.0.0", Active: "blue", Candidate: "green"}); err != nil {
		t.Fatal(err)
	}
	if got := r.jobModifyIndex("blue"); got != blueIndex {
		t.Fatalf("preparing green modified the blue job (index %d -> %d)", blueIndex, got)
	}

	// a: blue -> green.
	r.timedSwitch(v2, a, "blue", "green")
	r.waitPlacement(v2, a.Name+":green/running", b.Name+":blue/running")
	r.checkPassing(a.Name, "green")
	if got := r.allocOn(v2, b.Name, "blue").ID; got != bBlue {
		t.Fatalf("%s's blue allocation changed (%s -> %s)", b.Name, bBlue, got)
	}

	// a: back to blue (the rollback direction).
	r.timedSwitch(v2, a, "green", "blue")
	r.waitPlacement(v2, a.Name+":blue/running", b.Name+":blue/running")
	aBlue := r.allocOn(v2, a.Name, "blue").ID

	// Blue-green on a: the candidate beside the old allocation, then the
	// candidate taken away again.
	if err := v2.SwitchDevice(r.ctx, a, "blue", "blue,green"); err != nil {
		t.Fatal(err)
	}
	r.waitPlacement(v2, a.Name+":blue/running", a.Name+":green/running", b.Name+":blue/running")
	if err := v2.SwitchDevice(r.ctx, a, "blue,green", "blue"); err != nil {
		t.Fatal(err)
	}
	r.waitPlacement(v2, a.Name+":blue/running", b.Name+":blue/running")
	if got := r.allocOn(v2, a.Name, "blue").ID; got != aBlue {
		t.Fatalf("the blue-green rollback replaced %s's blue allocation (%s -> %s)", a.Name, aBlue, got)
	}
	if got := r.allocOn(v2, b.Name, "blue").ID; got != bBlue {
		t.Fatalf("%s's blue allocation changed (%s -> %s)", b.Name, bBlue, got)
	}

	// Removing the app (rolling back a first install).
	for _, dev := range []scheduler.DeviceRef{a, b} {
		r.timedSwitch(v2, dev, "blue", "")
	}
	r.waitPlacement(v2)
	if slot, err := v2.SlotOfNode(r.ctx, a.ID); err != nil || slot != "" {
		t.Fatalf("SlotOfNode(%s) after removal = %q, %v", a.Name, slot, err)
	}
}

// TestSwitchIdempotent repeats every call: nothing changes the second time.
func TestSwitchIdempotent(t *testing.T) {
	r := newRig(t, "idem")
	n := r.nomad("1.0.0")
	dev := r.device("gateway")
	ro := &scheduler.Rollout{App: r.app, ID: "r1", Version: "1.0.0", Candidate: "blue"}
	if err := n.PrepareCandidate(r.ctx, ro); err != nil {
		t.Fatal(err)
	}
	index := r.jobModifyIndex("blue")
	if err := n.PrepareCandidate(r.ctx, ro); err != nil {
		t.Fatal(err)
	}
	if got := r.jobModifyIndex("blue"); got != index {
		t.Fatalf("preparing the same candidate twice re-registered it (index %d -> %d)", index, got)
	}
	for range 2 {
		if err := n.SwitchDevice(r.ctx, dev, "", "blue"); err != nil {
			t.Fatal(err)
		}
	}
	r.waitPlacement(n, dev.Name+":blue/running")
	first := r.allocOn(n, dev.Name, "blue").ID

	start := time.Now()
	if err := n.SwitchDevice(r.ctx, dev, "", "blue"); err != nil {
		t.Fatal(err)
	}
	t.Logf("TIMING repeated switch (nothing to do) took %s", time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // give a wrong re-placement the time to show
	r.waitPlacement(n, dev.Name+":blue/running")
	if got := r.allocOn(n, dev.Name, "blue").ID; got != first {
		t.Fatalf("repeated switch replaced the allocation (%s -> %s)", first, got)
	}

	// A crash after the metadata was applied (step 1 done, steps 2–3 not):
	// the switch run again finishes the job.
	req := &api.NodeMetaApplyRequest{NodeID: dev.ID, Meta: map[string]*string{contract.SlotMetaKey(r.app): nil}}
	if _, err := r.c.Nomad.Nodes().Meta().Apply(req, nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := n.SwitchDevice(r.ctx, dev, "blue", ""); err != nil {
			t.Fatal(err)
		}
	}
	r.waitPlacement(n)
}

// TestSwitchOfflineDevice switches a device whose client is down: the error
// wraps scheduler.ErrDeviceOffline, and the device's metadata is unchanged
// once it is back.
func TestSwitchOfflineDevice(t *testing.T) {
	r := newRig(t, "off")
	n := r.nomad("1.0.0")
	n.SyncTimeout = 20 * time.Second
	dev := r.device("rpi")
	if err := n.PrepareCandidate(r.ctx, &scheduler.Rollout{App: r.app, ID: "r1", Version: "1.0.0", Candidate: "blue"}); err != nil {
		t.Fatal(err)
	}

	r.c.DeviceDown(t, dev.Name)
	// Right after: Nomad still lists the node as ready, but has no
	// connection to its client.
	err := n.SwitchDevice(r.ctx, dev, "", "blue")
	t.Logf("switch right after device-down: %v", err)
	if !errors.Is(err, scheduler.ErrDeviceOffline) {
		t.Fatalf("error = %v, want one wrapping ErrDeviceOffline", err)
	}
	if want := "setting slot metadata on " + dev.Name; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}

	// Once Nomad marks it down.
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		st, err := r.c.NodeStatus(dev.Name)
		return st == api.NodeStatusDown, fmt.Sprintf("%s is %s (%v)", dev.Name, st, err)
	})
	err = n.SwitchDevice(r.ctx, dev, "", "blue")
	t.Logf("switch of a down node: %v", err)
	if !errors.Is(err, scheduler.ErrDeviceOffline) {
		t.Fatalf("error = %v, want one wrapping ErrDeviceOffline", err)
	}

	r.c.DeviceUp(t, dev.Name)
	if slot, err := n.SlotOfNode(r.ctx, dev.ID); err != nil || slot != "" {
		t.Fatalf("server's slot of %s after it came back = %q, %v", dev.Name, slot, err)
	}
	meta, err := r.c.Nomad.Nodes().Meta().Read(dev.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := meta.Meta[contract.SlotMetaKey(r.app)]; ok {
		t.Fatalf("%s's client has %s = %q", dev.Name, contract.SlotMetaKey(r.app), v)
	}
	if live := r.live(n); len(live) != 0 {
		t.Fatalf("allocations placed: %s", placement(live))
	}
}

// TestParseAndCompileExample parses the demo jobspec with the server,
// compiles both slots and has the server validate them.
func TestParseAndCompileExample(t *testing.T) {
	c := testcluster.Require(t)
	ctx := context.Background()
	path := filepath.Join(c.Root, "examples", "edgeinfer.nomad.hcl")
	base, err := ParseJobspec(ctx, c.Nomad, path)
	if err != nil {
		t.Fatal(err)
	}
	if *base.ID != "edgeinfer" || *base.TaskGroups[0].RestartPolicy.Attempts != 2 {
		t.Fatalf("parsed job: id %s, restart %+v", *base.ID, base.TaskGroups[0].RestartPolicy)
	}
	p := edgeinferPolicy()
	for _, slot := range []string{"blue", "green"} {
		job, err := Compile(base, p, slot, "r-1")
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := c.Nomad.Jobs().Validate(job, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Error != "" || len(resp.ValidationErrors) > 0 {
			t.Fatalf("the server rejects the %s job: %s %v", slot, resp.Error, resp.ValidationErrors)
		}
		if w := resp.Warnings; w != "" {
			t.Logf("%s job warnings: %s", slot, w)
		}
		if got, want := len(job.TaskGroups), 2; got != want {
			t.Errorf("%d groups, want %d", got, want)
		}
		if *job.TaskGroups[0].RestartPolicy.Attempts != 2 || *job.TaskGroups[1].RestartPolicy.Attempts != 2 {
			t.Error("the jobspec's restart policy was not kept")
		}
	}

	// A broken jobspec: the error names the file and the line.
	bad := filepath.Join(t.TempDir(), "broken.nomad.hcl")
	if err := os.WriteFile(bad, []byte("job \"x\" {\n  group \"g\" {\n    count = \n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ParseJobspec(ctx, c.Nomad, bad)
	t.Logf("broken jobspec: %v", err)
	if err == nil || !strings.Contains(err.Error(), bad+":3") {
		t.Fatalf("error = %v, want it to name %s:3", err, bad)
	}
	if _, err := ParseJobspec(ctx, c.Nomad, filepath.Join(t.TempDir(), "missing.hcl")); err == nil || !strings.Contains(err.Error(), "missing.hcl") {
		t.Fatalf("missing file: %v", err)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
