// Package testcluster gives integration tests (build tag `integration`) the
// real dev cluster: Nomad and Consul clients, the device list, and the means
// to take a device offline and bring it back.
//
// `make test` starts the cluster before running the integration tests; a
// test run without it fails with a message that says how to start it.
package testcluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"
)

// Cluster is the running dev cluster.
type Cluster struct {
	Nomad  *nomad.Client
	Consul *consul.Client
	// Devices are the device names (Nomad node names = Consul node names).
	Devices []string
	Root    string
}

// RepoRoot is the repository's root folder.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Require returns the running dev cluster or fails the test.
func Require(t testing.TB) *Cluster {
	t.Helper()
	root := RepoRoot()
	script := filepath.Join(root, "dev-cluster", "cluster.sh")
	if out, err := exec.Command(script, "status").CombinedOutput(); err != nil {
		t.Fatalf("the dev cluster is not running (%v: %s); start it with `make dev-cluster`", err, out)
	}
	out, err := exec.Command(script, "devices").Output()
	if err != nil {
		t.Fatalf("listing dev cluster devices: %v", err)
	}
	ncfg := nomad.DefaultConfig()
	if os.Getenv("NOMAD_ADDR") == "" {
		ncfg.Address = "http://127.0.0.1:4646"
	}
	nc, err := nomad.NewClient(ncfg)
	if err != nil {
		t.Fatalf("nomad client: %v", err)
	}
	ccfg := consul.DefaultConfig()
	if os.Getenv("CONSUL_HTTP_ADDR") == "" {
		ccfg.Address = "127.0.0.1:8500"
	}
	cc, err := consul.NewClient(ccfg)
	if err != nil {
		t.Fatalf("consul client: %v", err)
	}
	return &Cluster{Nomad: nc, Consul: cc, Devices: strings.Fields(string(out)), Root: root}
}

// DeviceDown stops a device's Nomad client and Consul agent. The device is
// brought back when the test ends (if the test did not do it itself).
func (c *Cluster) DeviceDown(t testing.TB, name string) {
	t.Helper()
	c.run(t, "device-down", name)
	t.Cleanup(func() { c.ensureUp(t, name) })
}

// DeviceUp starts a device again with the same identity and waits until
// Nomad reports it ready.
func (c *Cluster) DeviceUp(t testing.TB, name string) {
	t.Helper()
	c.run(t, "device-up", name)
}

func (c *Cluster) ensureUp(t testing.TB, name string) {
	if st, _ := c.NodeStatus(name); st == "ready" {
		return
	}
	c.run(t, "device-up", name)
}

func (c *Cluster) run(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.Root, "dev-cluster", "cluster.sh"), args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dev-cluster %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// NodeID returns a device's Nomad node ID.
func (c *Cluster) NodeID(t testing.TB, name string) string {
	t.Helper()
	nodes, _, err := c.Nomad.Nodes().List(&nomad.QueryOptions{Filter: `Name == "` + name + `"`})
	if err != nil || len(nodes) != 1 {
		t.Fatalf("node %s: %v (%d found)", name, err, len(nodes))
	}
	return nodes[0].ID
}

// NodeStatus returns Nomad's status of a device ("" when unknown).
func (c *Cluster) NodeStatus(name string) (string, error) {
	nodes, _, err := c.Nomad.Nodes().List(&nomad.QueryOptions{Filter: `Name == "` + name + `"`})
	if err != nil || len(nodes) == 0 {
		return "", err
	}
	return nodes[0].Status, nil
}

// Eventually waits for cond to hold, checking every interval, until the
// deadline; it fails the test with the last message cond returned.
func Eventually(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met within %s: %s", timeout, last)
		case <-tick.C:
		}
	}
}

// DeviceFreeze freezes a device's Nomad client and Consul agent (SIGSTOP):
// they stop answering and heartbeating while its tasks keep running. The
// device is thawed when the test ends (if the test did not do it itself).
func (c *Cluster) DeviceFreeze(t testing.TB, name string) {
	t.Helper()
	c.run(t, "device-freeze", name)
	t.Cleanup(func() { c.ensureThawed(name) })
}

// DeviceThaw resumes a frozen device's agents (SIGCONT).
func (c *Cluster) DeviceThaw(t testing.TB, name string) {
	t.Helper()
	c.run(t, "device-thaw", name)
}

// ensureThawed sends SIGCONT again; harmless on a running device.
func (c *Cluster) ensureThawed(name string) {
	_ = exec.Command(filepath.Join(c.Root, "dev-cluster", "cluster.sh"), "device-thaw", name).Run()
}

// EnsureUp starts a device that is not ready in Nomad (a test's cleanup
// after a power-off that may or may not have been undone).
func (c *Cluster) EnsureUp(t testing.TB, name string) {
	t.Helper()
	c.ensureUp(t, name)
}

// ServerRestart restarts the Nomad or Consul server ("nomad", "consul")
// with the same data dir, so the cluster's state survives, and waits for
// its leader.
func (c *Cluster) ServerRestart(t testing.TB, which string) {
	t.Helper()
	c.run(t, "server-restart", which)
}

// Script runs dev-cluster/cluster.sh with args and returns its combined
// output; for callers that cannot fail the test where they run (goroutines).
func (c *Cluster) Script(args ...string) ([]byte, error) {
	return exec.Command(filepath.Join(c.Root, "dev-cluster", "cluster.sh"), args...).CombinedOutput()
}
