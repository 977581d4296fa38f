//go:build integration

package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

// newTestRegistry returns a registry under a KV prefix of its own, removed
// when the test ends.
func newTestRegistry(t *testing.T, o Options) (*Registry, *testcluster.Cluster) {
	t.Helper()
	cl := testcluster.Require(t)
	o.Prefix = fmt.Sprintf("fleetplan-test/registry-%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	t.Cleanup(func() {
		if _, err := cl.Consul.KV().DeleteTree(o.Prefix, nil); err != nil {
			t.Errorf("cleaning up %s: %v", o.Prefix, err)
		}
	})
	return New(cl.Nomad, cl.Consul, o), cl
}

// wantHW is the hardware the dev cluster declares per class.
var wantHW = map[string]scheduler.Capabilities{
	"jetson":  {Model: "jetson-orin-nano", Accelerator: "cuda", MemoryMB: 8192},
	"rpi":     {Model: "raspberry-pi-5", Accelerator: "none", MemoryMB: 4096},
	"gateway": {Model: "dell-edge-3200", Accelerator: "none", MemoryMB: 16384},
}

func TestIntegrationRegistryListsDevices(t *testing.T) {
	r, cl := newTestRegistry(t, Options{})
	ctx := context.Background()

	events, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	added := 0
	for _, e := range events {
		if e.Kind == scheduler.EventAdded {
			added++
		}
	}
	if added != len(cl.Devices) {
		t.Errorf("first sync: %d added events, want %d: %+v", added, len(cl.Devices), events)
	}
	devs, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]scheduler.Device{}
	for _, d := range devs {
		byName[d.Name] = d
	}
	if len(devs) != len(cl.Devices) {
		t.Errorf("registry has %d devices, want the %d of the dev cluster (%v); the Consul server must not be one: %+v", len(devs), len(cl.Devices), cl.Devices, devs)
	}
	for _, name := range cl.Devices {
		d, ok := byName[name]
		if !ok {
			t.Errorf("device %s missing from the registry", name)
			continue
		}
		class := name[:strings.LastIndex(name, "-")]
		hw := wantHW[class]
		c := d.Capabilities
		if d.Class != class || c.Model != hw.Model || c.Accelerator != hw.Accelerator || c.MemoryMB != hw.MemoryMB {
			t.Errorf("%s: class %q capabilities %+v, want class %q and %+v", name, d.Class, c, class, hw)
		}
		if c.Arch == "" || c.OS == "" || c.Kernel == "" {
			t.Errorf("%s: capabilities without arch/os/kernel: %+v", name, c)
		}
		if d.ID != cl.NodeID(t, name) || d.Datacenter != "dc1" || d.Meta["fleet"] != "vision" {
			t.Errorf("%s: id %s dc %s meta %v", name, d.ID, d.Datacenter, d.Meta)
		}
		if st, _ := cl.NodeStatus(name); st == "ready" && (d.Status != scheduler.StatusOK || d.ConsulStatus != "passing") {
			t.Errorf("%s is ready in Nomad but %s in the registry (consul %q): %s", name, d.Status, d.ConsulStatus, d.Reason)
		}
	}

	// A second sync of an unchanged fleet reads no node details and writes
	// nothing.
	before := snapshotIndexes(t, r)
	fetches := r.detailFetches.Load()
	events, err = r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.detailFetches.Load() - fetches; n != 0 {
		t.Errorf("second sync read %d node details, want 0", n)
	}
	if after := snapshotIndexes(t, r); fmt.Sprint(before) != fmt.Sprint(after) && len(events) == 0 {
		t.Errorf("second sync without events rewrote entries: %v -> %v", before, after)
	}

	// Lookups.
	j := byName[cl.Devices[0]]
	for _, q := range []string{j.Name, j.ID, j.ID[:8]} {
		d, err := r.Get(ctx, q)
		if err != nil || d.ID != j.ID {
			t.Errorf("Get(%q) = %v, %v", q, d, err)
		}
	}
	if _, err := r.Get(ctx, "no-such-device"); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("Get of an unknown device: %v", err)
	}
	evs, err := r.DeviceEvents(ctx, j.ID, j.Name, 10)
	if err != nil || len(evs) == 0 || evs[0].Kind != scheduler.EventAdded {
		t.Errorf("DeviceEvents(%s) = %+v, %v", j.Name, evs, err)
	}
}

func snapshotIndexes(t *testing.T, r *Registry) map[string]uint64 {
	t.Helper()
	s, err := r.load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return s.index
}

func TestIntegrationDevicesSelector(t *testing.T) {
	r, cl := newTestRegistry(t, Options{})
	ctx := context.Background()
	for _, tt := range []struct {
		selector string
		dcs      []string
		want     int
	}{
		{`Meta.fleet == "vision"`, nil, len(cl.Devices)},
		{`Meta.fleet == "vision"`, []string{"dc1"}, len(cl.Devices)},
		{`Meta.fleet == "vision"`, []string{"dc*"}, len(cl.Devices)},
		{`Meta.fleet == "vision"`, []string{"dc9"}, 0},
		{`Meta.fleet == "vision" and NodeClass == "jetson"`, nil, 2},
		{`Meta.fleet == "elsewhere"`, nil, 0},
	} {
		p := &scheduler.Policy{Name: "sel", Fleet: scheduler.Fleet{Selector: tt.selector, Datacenters: tt.dcs}}
		devs, err := r.Devices(ctx, p)
		if err != nil {
			t.Fatalf("%s %v: %v", tt.selector, tt.dcs, err)
		}
		if len(devs) != tt.want {
			t.Errorf("Devices(%s, %v) = %d devices, want %d", tt.selector, tt.dcs, len(devs), tt.want)
		}
	}
	_, err := r.Devices(ctx, &scheduler.Policy{Fleet: scheduler.Fleet{Selector: `Meta.fleet ==`}})
	if err == nil || !strings.Contains(err.Error(), "fleet selector") {
		t.Errorf("a bad selector: %v", err)
	}
}

func TestIntegrationOperatorActions(t *testing.T) {
	r, cl := newTestRegistry(t, Options{Actor: "rollout test-1"})
	ctx := context.Background()
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	name := cl.Devices[1]
	id := cl.NodeID(t, name)

	if err := r.Quarantine(ctx, id, "failed rollout test-1 on its own"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	d, err := r.Get(ctx, name)
	if err != nil || d.Status != scheduler.StatusQuarantined || !strings.Contains(d.Reason, "test-1") {
		t.Fatalf("after Quarantine and a sync: %+v, %v", d, err)
	}
	if ok, why := d.Deployable(); ok || why == "" {
		t.Errorf("a quarantined device is deployable")
	}
	if _, err := r.Resolve(ctx, name, "alice"); err == nil {
		t.Errorf("Resolve of a quarantined device succeeded")
	}
	d, err = r.Release(ctx, name, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := cl.NodeStatus(name); st == "ready" && d.Status != scheduler.StatusOK {
		t.Errorf("after Release: %s (%s)", d.Status, d.Reason)
	}
	evs, err := r.DeviceEvents(ctx, id, name, 20)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for _, e := range evs {
		kinds = append(kinds, e.Kind+"/"+e.Actor)
	}
	if got := strings.Join(kinds, " "); !strings.Contains(got, "quarantined/rollout test-1 released/alice") {
		t.Errorf("events of %s: %s", name, got)
	}

	// A discrepancy (a node only Consul knows), resolved by an operator,
	// then removed by a sync since Consul does not list it.
	ghost := scheduler.Device{ID: "consul:ghost-1", Name: "ghost-1", ConsulStatus: "passing", Status: scheduler.StatusDiscrepancy, Reason: "Consul node has no Nomad node"}
	b, _ := json.Marshal(ghost)
	if _, err := cl.Consul.KV().Put(&consulapi.KVPair{Key: r.devicesPrefix() + ghost.ID, Value: b}, nil); err != nil {
		t.Fatal(err)
	}
	d, err = r.Resolve(ctx, "ghost-1", "bob")
	if err != nil || !d.Resolved {
		t.Fatalf("Resolve: %+v, %v", d, err)
	}
	if ok, _ := d.Deployable(); !ok {
		t.Errorf("a resolved discrepancy is not deployable")
	}
	events, err := r.Sync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(events, "consul:ghost-1", scheduler.EventRemoved) {
		t.Errorf("sync did not remove the ghost: %+v", events)
	}
}

func hasEvent(evs []Event, device, kind string) bool {
	for _, e := range evs {
		if e.Device == device && e.Kind == kind {
			return true
		}
	}
	return false
}

// A device taken down becomes offline within the heartbeat timeout, and ok
// again when it returns, with Watch keeping the registry in step.
func TestIntegrationWatchOfflineAndBack(t *testing.T) {
	var mu sync.Mutex
	var syncs int
	var log []Event
	r, cl := newTestRegistry(t, Options{
		MinSyncInterval: 200 * time.Millisecond,
		OnSync: func(evs []Event, err error) {
			mu.Lock()
			defer mu.Unlock()
			syncs++
			log = append(log, evs...)
			if err != nil {
				t.Logf("sync: %v", err)
			}
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Watch returned %v", err)
		}
	}()

	// Other tests share the cluster: take down a device that is up.
	name := ""
	for i := len(cl.Devices) - 1; i >= 0 && name == ""; i-- {
		if st, _ := cl.NodeStatus(cl.Devices[i]); st == "ready" {
			name = cl.Devices[i]
		}
	}
	if name == "" {
		t.Fatal("no device of the dev cluster is ready")
	}
	status := func() (scheduler.RegistryStatus, string) {
		d, err := r.Get(context.Background(), name)
		if err != nil {
			return "", err.Error()
		}
		return d.Status, d.Reason
	}
	testcluster.Eventually(t, 20*time.Second, func() (bool, string) {
		st, why := status()
		return st == scheduler.StatusOK, fmt.Sprintf("%s is %s %s", name, st, why)
	})

	down := time.Now()
	cl.DeviceDown(t, name)
	testcluster.Eventually(t, 40*time.Second, func() (bool, string) {
		st, why := status()
		return st == scheduler.StatusOffline, fmt.Sprintf("%s is %s %s", name, st, why)
	})
	t.Logf("%s offline in the registry %s after it went down", name, time.Since(down).Round(100*time.Millisecond))
	// And stays offline once Nomad marks the node down (the heartbeat TTL).
	testcluster.Eventually(t, 40*time.Second, func() (bool, string) {
		d, err := r.Get(context.Background(), name)
		if err != nil {
			return false, err.Error()
		}
		return d.Status == scheduler.StatusOffline && d.NomadStatus == "down", fmt.Sprintf("%s: %s, Nomad %s", name, d.Status, d.NomadStatus)
	})
	t.Logf("%s down in Nomad %s after it went down", name, time.Since(down).Round(100*time.Millisecond))

	up := time.Now()
	cl.DeviceUp(t, name)
	testcluster.Eventually(t, 40*time.Second, func() (bool, string) {
		st, why := status()
		return st == scheduler.StatusOK, fmt.Sprintf("%s is %s %s", name, st, why)
	})
	t.Logf("%s ok again %s after device-up", name, time.Since(up).Round(100*time.Millisecond))

	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, e := range log {
		if e.Name == name {
			kinds = append(kinds, e.Kind)
		}
	}
	t.Logf("%d syncs; events of %s: %v", syncs, name, kinds)
	if !strings.Contains(strings.Join(kinds, " "), scheduler.EventOffline) || kinds[len(kinds)-1] != scheduler.EventOnline {
		t.Errorf("events of %s: %v, want offline ... online", name, kinds)
	}
}
