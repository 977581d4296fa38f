//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

var fleetplanBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetplan-e2e")
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

// The check names a person sees in the Consul UI, by layer: the device
// agent's two node checks, Nomad's layer 3 check and the agent's two checks
// on every application instance (agent/doc.go).
var layerChecks = []string{
	"fleetplan L1 connectivity",
	"fleetplan L2 system",
	"fleetplan L3 application",
	"fleetplan L3 version and metrics",
	"fleetplan L4 functional",
}

const uiApp = "uitest"

// TestConsulUIShowsHealthLayers installs the device agent and a small
// application with a functional block, waits until a device has its four
// health layers passing in Consul, then opens two pages of the Consul UI in
// headless Chromium and finds every layer's check by name on each rendered
// page:
//
//   - the device's page, /ui/<dc>/nodes/<device>/health-checks: every check
//     on the device, the node's and those of every service instance on it;
//   - the application instance's page,
//     /ui/<dc>/services/<service>/instances/<device>/<service ID>/health-checks:
//     the instance's checks and the node's.
//
// On both it also finds the IDs of this instance's layer 3 and 4 checks, so
// the names are not another application's. Each page's DOM and a
// screenshot are written to a folder the test logs (kept when the test
// fails, or when FLEETPLAN_E2E_ARTIFACTS names a folder for them).
func TestConsulUIShowsHealthLayers(t *testing.T) {
	chromium := findChromium(t)
	c := testcluster.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	artifacts := artifactsDir(t)

	cleanupApp(t, c, uiApp)
	installAgent(t, ctx, c)

	dir := t.TempDir()
	file := writePolicy(t, dir, uiApp, "1.0.0")
	start := time.Now()
	res := fleetplan(t, ctx, "apply", "-auto-approve", file)
	if res.code != 0 {
		t.Fatalf("apply %s exited %d\nstdout:\n%s\nstderr:\n%s", file, res.code, res.stdout, res.stderr)
	}
	t.Logf("apply of %s 1.0.0 done in %s", uiApp, time.Since(start).Round(time.Second))

	// A device whose four layers all pass, as Consul's API says.
	var inst instance
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		var why string
		inst, why = passingInstance(c, uiApp)
		return why == "", why
	})
	t.Logf("device %s, service %s, instance %s: every layer passing in Consul", inst.Node, inst.Service, inst.ServiceID)

	self, err := c.Consul.Agent().Self()
	if err != nil {
		t.Fatal(err)
	}
	dc, _ := self["Config"]["Datacenter"].(string)
	if dc == "" {
		dc = "dc1"
	}
	ui := consulUIBase() + "/ui/" + url.PathEscape(dc)
	want := append([]string{inst.Node, "fleetplan-L3-" + inst.ServiceID, "fleetplan-L4-" + inst.ServiceID}, layerChecks...)

	browser := newBrowser(t, ctx, chromium, artifacts)
	pages := []struct{ name, url string }{
		{"device", ui + "/nodes/" + url.PathEscape(inst.Node) + "/health-checks"},
		{"instance", ui + "/services/" + url.PathEscape(inst.Service) + "/instances/" +
			url.PathEscape(inst.Node) + "/" + url.PathEscape(inst.ServiceID) + "/health-checks"},
	}
	for _, p := range pages {
		t.Run(p.name, func(t *testing.T) {
			checkPage(t, browser, p.url, want, filepath.Join(artifacts, "consul-ui-"+p.name))
		})
	}
}

// checkPage opens page in the browser, waits until it shows every one of
// want, saves its DOM (base.html) and a screenshot (base.png) whatever the
// outcome, and fails unless the rendered DOM has every one of want.
func checkPage(t *testing.T, browser context.Context, page string, want []string, base string) {
	t.Logf("Consul UI page: %s", page)
	if err := chromedp.Do(browser, chromedp.Navigate(page)); err != nil {
		t.Fatalf("opening %s: %v", page, err)
	}
	shown := waitShown(browser, want, 60*time.Second)

	dom, err := chromedp.Run(browser, chromedp.OuterHTML(chromedp.CSS("html")))
	if err != nil {
		t.Errorf("reading the page's DOM: %v", err)
	}
	if err := os.WriteFile(base+".html", []byte(dom), 0o644); err != nil {
		t.Error(err)
	}
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("taking a screenshot: %v", err)
	}
	if err := os.WriteFile(base+".png", png, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s (DOM: %s)", base+".png", base+".html")

	if shown != nil {
		t.Fatalf("the page does not show every layer within 60s (%v); its text:\n%s", shown, pageText(browser))
	}
	var missing []string
	for _, w := range want {
		if !strings.Contains(dom, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("the page's DOM lacks %q", missing)
	}
}

// instance is one application instance on a device, as Consul's catalog
// names it.
type instance struct {
	Node, Service, ServiceID string
}

// passingInstance returns an instance of app (on the first device in name
// order) whose node has the agent's L1 and L2 checks passing and whose
// service has Nomad's L3 check and the agent's L3 and L4 checks passing,
// or says why there is none.
func passingInstance(c *testcluster.Cluster, app string) (instance, string) {
	// The application's instances: the service IDs Nomad gives its
	// allocations' services start with _nomad-task-<alloc ID>-.
	allocNode := map[string]string{}
	for _, slot := range []string{"blue", "green"} {
		allocs, _, err := c.Nomad.Jobs().Allocations(app+"-"+slot, false, nil)
		if err != nil {
			continue
		}
		for _, a := range allocs {
			if a.ClientStatus == nomad.AllocClientStatusRunning {
				allocNode[a.ID] = a.NodeName
			}
		}
	}
	if len(allocNode) == 0 {
		return instance{}, "no running allocation of " + app
	}
	services, _, err := c.Consul.Catalog().Services(nil)
	if err != nil {
		return instance{}, err.Error()
	}
	var found []instance
	var why []string
	for svc, tags := range services {
		if !hasPrefix(tags, "fleetplan-slot=") {
			continue
		}
		entries, _, err := c.Consul.Health().Service(svc, "", false, nil)
		if err != nil {
			return instance{}, err.Error()
		}
		for _, e := range entries {
			node, ok := "", false
			for id, n := range allocNode {
				if strings.HasPrefix(e.Service.ID, "_nomad-task-"+id+"-") && n == e.Node.Node {
					node, ok = n, true
				}
			}
			if !ok {
				continue
			}
			status := map[string]string{}
			for _, ch := range e.Checks {
				if ch.ServiceID == "" || ch.ServiceID == e.Service.ID {
					status[ch.Name] = ch.Status
				}
			}
			var bad []string
			for _, name := range layerChecks {
				if st := status[name]; st != consul.HealthPassing {
					if st == "" {
						st = "missing"
					}
					bad = append(bad, name+": "+st)
				}
			}
			if len(bad) > 0 {
				why = append(why, fmt.Sprintf("%s %s: %s", node, e.Service.ID, strings.Join(bad, ", ")))
				continue
			}
			found = append(found, instance{Node: node, Service: svc, ServiceID: e.Service.ID})
		}
	}
	if len(found) == 0 {
		sort.Strings(why)
		return instance{}, "no instance of " + app + " has every layer passing: " + strings.Join(why, "; ")
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Node < found[j].Node })
	return found[0], ""
}

func hasPrefix(tags []string, prefix string) bool {
	for _, t := range tags {
		if strings.HasPrefix(t, prefix) {
			return true
		}
	}
	return false
}

// consulUIBase is the Consul HTTP address the tests use, as a URL.
func consulUIBase() string {
	addr := os.Getenv("CONSUL_HTTP_ADDR")
	if addr == "" {
		addr = "127.0.0.1:8500"
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimRight(addr, "/")
}

// artifactsDir is where the test writes the page's DOM, its screenshot and
// Chromium's log: $FLEETPLAN_E2E_ARTIFACTS when set (kept), else a new
// temporary folder that is removed when the test passes and kept when it
// fails.
func artifactsDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("FLEETPLAN_E2E_ARTIFACTS"); d != "" {
		d = filepath.Join(d, t.Name())
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "fleetplan-e2e-consul-ui-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept for inspection: %s", d)
			return
		}
		os.RemoveAll(d)
	})
	return d
}

// writePolicy writes a small policy of the demo application (the shape of
// dev-cluster/demo/edgeinfer-v1.fleet.hcl, with soaks of seconds) named app
// into dir: every layer, the functional block included.
func writePolicy(t *testing.T, dir, app, version string) string {
	t.Helper()
	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	src := fmt.Sprintf(`rollout %q {
  fleet { selector = "Meta.fleet == \"vision\"" }
  release {
    jobspec = %q
    version = %q
  }
  max_parallel = 6
  canary {
    percent = 5
    soak    = "2s"
  }
  wave {
    percent = 100
    soak    = "2s"
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
      max_latency = "250ms"
      interval    = "2s"
    }
  }
  rollback {
    max_failure_percent              = 0
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 100
    scope                            = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, app, jobspec, version)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", app, version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	code           int
	stdout, stderr string
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

// installAgent makes sure the device agent runs on every device (fleetplan
// agent install -default-system cpu=off: the dev cluster's devices share one
// busy host), from the fleetplan binary just built, and waits until every
// ready device has its node checks. The job is purged when the test ends,
// unless it was there before the test: other tests and the demo on the
// shared cluster use it, so it is then left as the test found it.
func installAgent(t *testing.T, ctx context.Context, c *testcluster.Cluster) {
	t.Helper()
	installBinary(t, c)
	job, _, err := c.Nomad.Jobs().Info("fleetplan-agent", nil)
	existed := err == nil && (job.Stop == nil || !*job.Stop)
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
	} else {
		t.Log("the device agent was installed before the test: left installed")
	}
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		var missing []string
		for _, name := range c.Devices {
			if st, _ := c.NodeStatus(name); st != "ready" {
				continue // taken down by another test
			}
			checks, _, err := c.Consul.Health().Node(name, nil)
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, ch := range checks {
				if ch.Name == "fleetplan L1 connectivity" || ch.Name == "fleetplan L2 system" {
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

// installBinary puts the fleetplan binary just built where the agent job
// runs it from on the devices (node meta edge.bin_dir; one folder for every
// device of the dev cluster), atomically: agents running the old file keep
// it, the ones that start next run the new one.
func installBinary(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	dirs := map[string]bool{}
	for _, name := range c.Devices {
		node, _, err := c.Nomad.Nodes().Info(c.NodeID(t, name), nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := node.Meta["edge.bin_dir"]; d != "" {
			dirs[d] = true
		}
	}
	for dir := range dirs {
		tmp := filepath.Join(dir, fmt.Sprintf(".fleetplan-e2e-%d.tmp", os.Getpid()))
		if err := copyFile(fleetplanBin, tmp); err != nil {
			os.Remove(tmp)
			t.Fatalf("installing fleetplan into %s: %v", dir, err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "fleetplan")); err != nil {
			os.Remove(tmp)
			t.Fatal(err)
		}
	}
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// cleanupApp removes, when the test ends and also now (a run that was
// killed leaves them), everything the application leaves on the cluster:
// its slot jobs (purged), the slot node meta, its rollout, its registry
// entry, its audit trail and the device agents' config of it.
func cleanupApp(t *testing.T, c *testcluster.Cluster, app string) {
	t.Helper()
	clean := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		wo := (&nomad.WriteOptions{}).WithContext(ctx)
		for _, slot := range []string{"blue", "green"} {
			_, _, _ = c.Nomad.Jobs().Deregister(app+"-"+slot, true, wo)
		}
		var wg sync.WaitGroup
		for _, name := range c.Devices {
			wg.Go(func() {
				if err := removeSlotMeta(ctx, c, name, app); err != nil {
					t.Logf("cleanup: %v", err)
				}
			})
		}
		wg.Wait()
		cwo := (&consul.WriteOptions{}).WithContext(ctx)
		// Each a key, a folder, or both; never a prefix of another app's.
		for _, p := range []string{"fleetplan/rollouts/" + app, "fleetplan/apps/" + app, "fleetplan/audit/" + app, "fleetplan/agent/apps/" + app} {
			_, _ = c.Consul.KV().Delete(p, cwo)
			_, _ = c.Consul.KV().DeleteTree(p+"/", cwo)
		}
	}
	clean()
	t.Cleanup(clean)
}

// removeSlotMeta removes the node meta fleetplan.<app>.slot of a device and
// waits until the Nomad servers no longer show it, asking the device again
// every 10 s (a device that is down keeps it: an error says so).
func removeSlotMeta(ctx context.Context, c *testcluster.Cluster, device, app string) error {
	key := "fleetplan." + app + ".slot"
	var applied time.Time
	var last error
	deadline := time.Now().Add(45 * time.Second)
	for time.Now().Before(deadline) {
		nodes, _, err := c.Nomad.Nodes().List((&nomad.QueryOptions{Filter: `Name == "` + device + `"`}).WithContext(ctx))
		if err != nil || len(nodes) != 1 {
			return fmt.Errorf("node %s: %v (%d found)", device, err, len(nodes))
		}
		node, _, err := c.Nomad.Nodes().Info(nodes[0].ID, (&nomad.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("node %s: %v", device, err)
		}
		if _, ok := node.Meta[key]; !ok {
			return nil
		}
		if time.Since(applied) > 10*time.Second {
			applied = time.Now()
			_, last = c.Nomad.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: node.ID, Meta: map[string]*string{key: nil}}, (&nomad.QueryOptions{}).WithContext(ctx))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("removing %s from %s: %w", key, device, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("node %s still has meta %s (last error: %v)", device, key, last)
}
