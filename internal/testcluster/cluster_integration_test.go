//go:build integration

package testcluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"
)

// The dev cluster looks like an edge fleet: six ready devices of three
// classes with their hardware meta, and seven alive Consul members.
func TestIntegrationClusterShape(t *testing.T) {
	c := testcluster.Require(t)
	if len(c.Devices) != 6 {
		t.Fatalf("the cluster has %d devices, want 6 (the default)", len(c.Devices))
	}
	nodes, _, err := c.Nomad.Nodes().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	classes := map[string]int{}
	want := map[string]string{"jetson": "cuda", "rpi": "none", "gateway": "none"}
	for _, stub := range nodes {
		if stub.Status != "ready" {
			t.Errorf("node %s is %s", stub.Name, stub.Status)
		}
		node, _, err := c.Nomad.Nodes().Info(stub.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		classes[node.NodeClass]++
		if !strings.HasPrefix(node.Name, node.NodeClass+"-") {
			t.Errorf("node %s has class %s", node.Name, node.NodeClass)
		}
		if node.Meta["fleet"] != "vision" || node.Meta["hw.model"] == "" || node.Meta["hw.mem_mb"] == "" || node.Meta["hw.accelerator"] != want[node.NodeClass] {
			t.Errorf("node %s meta %v", node.Name, node.Meta)
		}
		if node.Attributes["driver.raw_exec"] != "1" {
			t.Errorf("node %s has no raw_exec driver", node.Name)
		}
	}
	for class := range want {
		if classes[class] != 2 {
			t.Errorf("%d nodes of class %s, want 2", classes[class], class)
		}
	}
	members, err := c.Consul.Agent().Members(false)
	if err != nil {
		t.Fatal(err)
	}
	alive := 0
	for _, m := range members {
		if m.Status == 1 {
			alive++
		}
	}
	if alive != 7 {
		t.Errorf("%d alive Consul members, want 7 (server + 6 devices)", alive)
	}
}

// The demo app runs as a plain system job on every device and its Consul
// check passes on every node.
func TestIntegrationDemoAppSystemJob(t *testing.T) {
	c := testcluster.Require(t)
	src, err := os.ReadFile(filepath.Join(c.Root, "examples", "edgeinfer.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	job, err := c.Nomad.Jobs().ParseHCL(string(src), true)
	if err != nil {
		t.Fatal(err)
	}
	id := "tc-edgeinfer"
	job.ID, job.Name = &id, &id
	svc := "tc-edgeinfer"
	g := job.TaskGroups[0]
	g.Services[0].Name = svc
	g.Services[0].Checks = []nomad.ServiceCheck{{Name: "health", Type: "http", Path: "/health", Interval: time.Second, Timeout: time.Second}}
	g.Tasks[0].Env = map[string]string{"EDGEINFER_VERSION": "1.2.3"}
	if _, _, err := c.Nomad.Jobs().Register(job, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _, _ = c.Nomad.Jobs().Deregister(id, true, nil) })
	testcluster.Eventually(t, 90*time.Second, func() (bool, string) {
		entries, _, err := c.Consul.Health().Service(svc, "", false, nil)
		if err != nil {
			return false, err.Error()
		}
		passing := map[string]bool{}
		for _, e := range entries {
			ok := true
			for _, ch := range e.Checks {
				if ch.Status != consul.HealthPassing {
					ok = false
				}
				if ch.Name == "health" && !strings.Contains(ch.Output, `"version":"1.2.3"`) {
					ok = false
				}
			}
			if ok {
				passing[e.Node.Node] = true
			}
		}
		for _, d := range c.Devices {
			if !passing[d] {
				return false, fmt.Sprintf("%s has no passing instance (%d of %d passing)", d, len(passing), len(c.Devices))
			}
		}
		return true, ""
	})
}

// A device taken down turns down in Nomad and critical in Consul, and comes
// back ready with the same node ID.
func TestIntegrationDeviceDownAndUp(t *testing.T) {
	c := testcluster.Require(t)
	name := c.Devices[len(c.Devices)-1]
	id := c.NodeID(t, name)
	c.DeviceDown(t, name)
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		st, _ := c.NodeStatus(name)
		checks, _, err := c.Consul.Health().Node(name, nil)
		if err != nil {
			return false, err.Error()
		}
		serf := "absent"
		for _, ch := range checks {
			if ch.CheckID == "serfHealth" {
				serf = ch.Status
			}
		}
		return st == "down" && serf == consul.HealthCritical, fmt.Sprintf("Nomad %s, serfHealth %s", st, serf)
	})
	c.DeviceUp(t, name)
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		st, _ := c.NodeStatus(name)
		return st == "ready", "Nomad status " + st
	})
	if got := c.NodeID(t, name); got != id {
		t.Fatalf("%s came back as node %s, was %s", name, got, id)
	}
}
