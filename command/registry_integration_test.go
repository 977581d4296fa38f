//go:build integration

package command

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

// registryTestEnv points the registry commands at the dev cluster and at a
// KV prefix of the test's own, removed when it ends.
func registryTestEnv(t *testing.T) *testcluster.Cluster {
	t.Helper()
	cl := testcluster.Require(t)
	prefix := fmt.Sprintf("fleetplan-test/command-registry-%d/", time.Now().UnixNano())
	t.Setenv("FLEETPLAN_KV_PREFIX", prefix)
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:4646")
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
	t.Cleanup(func() {
		if _, err := cl.Consul.KV().DeleteTree(prefix, nil); err != nil {
			t.Errorf("cleaning up %s: %v", prefix, err)
		}
	})
	return cl
}

func TestIntegrationRegistryCommands(t *testing.T) {
	cl := registryTestEnv(t)

	stdout, stderr, code := runCLI(t, "", "registry", "sync")
	if code != ExitOK || !strings.Contains(stdout, "Registry synced") || strings.Count(stdout, " added ") != len(cl.Devices) {
		t.Fatalf("registry sync: exit %d\n%s%s", code, stdout, stderr)
	}

	stdout, stderr, code = runCLI(t, "", "registry", "list")
	if code != ExitOK {
		t.Fatalf("registry list: exit %d: %s", code, stderr)
	}
	for _, name := range cl.Devices {
		if strings.Count(stdout, "\n"+name+" ") != 1 {
			t.Errorf("registry list does not name %s exactly once:\n%s", name, stdout)
		}
	}
	if strings.Contains(stdout, "fleetplan-server") {
		t.Errorf("the Consul server is listed as a device:\n%s", stdout)
	}

	stdout, _, code = runCLI(t, "", "registry", "list", "-json", "-class", "jetson")
	var devs []scheduler.Device
	if err := json.Unmarshal([]byte(stdout), &devs); err != nil || code != ExitOK {
		t.Fatalf("registry list -json: exit %d, %v\n%s", code, err, stdout)
	}
	if len(devs) != 2 || devs[0].Class != "jetson" || devs[0].Capabilities.Accelerator != "cuda" {
		t.Errorf("registry list -json -class jetson: %+v", devs)
	}

	name := cl.Devices[0]
	stdout, stderr, code = runCLI(t, "", "registry", "quarantine", name, "-reason", "overheats", "-actor", "alice")
	if code != ExitOK || !strings.Contains(stdout, "quarantined: overheats") {
		t.Fatalf("registry quarantine: exit %d\n%s%s", code, stdout, stderr)
	}
	stdout, _, _ = runCLI(t, "", "registry", "list", "-status", "quarantined")
	if !strings.Contains(stdout, name) || !strings.Contains(stdout, "1 device: 1 quarantined") {
		t.Errorf("registry list -status quarantined:\n%s", stdout)
	}
	stdout, stderr, code = runCLI(t, "", "registry", "show", name)
	if code != ExitOK || !strings.Contains(stdout, "no: quarantined: overheats") || !strings.Contains(stdout, "alice") || !strings.Contains(stdout, "added") {
		t.Errorf("registry show: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code = runCLI(t, "", "registry", "resolve", name); code == ExitOK {
		t.Errorf("resolve of a device without discrepancy succeeded: %s", stderr)
	}
	stdout, stderr, code = runCLI(t, "", "registry", "release", name)
	if code != ExitOK || !strings.Contains(stdout, "Released "+name) {
		t.Errorf("registry release: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stderr, code = runCLI(t, "", "registry", "show", "no-such-device"); code != ExitUsage || !strings.Contains(stderr, "no such device") {
		t.Errorf("show of an unknown device: exit %d: %s", code, stderr)
	}
}

func TestIntegrationClientsNameTheAddress(t *testing.T) {
	registryTestEnv(t)
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1")
	_, stderr, code := runCLI(t, "", "registry", "sync")
	if code != ExitInternal || !strings.Contains(stderr, "Nomad at http://127.0.0.1:1") {
		t.Errorf("unreachable Nomad: exit %d: %s", code, stderr)
	}
	t.Setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
	_, stderr, code = runCLI(t, "", "registry", "list", "-stale")
	if code != ExitInternal || !strings.Contains(stderr, "Consul at http://127.0.0.1:1") {
		t.Errorf("unreachable Consul: exit %d: %s", code, stderr)
	}
}
