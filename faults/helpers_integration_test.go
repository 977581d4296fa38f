//go:build integration

package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// fleetplanBin is the controller binary under test: bin/fleetplan (make
// dev), built into a temporary folder when it is missing.
var fleetplanBin string

func TestMain(m *testing.M) {
	fleetplanBin = filepath.Join(testcluster.RepoRoot(), "bin", "fleetplan")
	tmp := ""
	if _, err := os.Stat(fleetplanBin); err != nil {
		dir, err := os.MkdirTemp("", "fleetplan-faults")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		tmp = dir
		fleetplanBin = filepath.Join(dir, "fleetplan")
		build := exec.Command("go", "build", "-o", fleetplanBin, ".")
		build.Dir = testcluster.RepoRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building fleetplan: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	os.Exit(code)
}

// directEnv reaches the cluster without the fault proxy.
func directEnv() []string {
	return append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:4646", "CONSUL_HTTP_ADDR=127.0.0.1:8500")
}

type result struct {
	code           int
	stdout, stderr string
}

// fleetplan runs the binary to its end with env (directEnv when nil).
func fleetplan(ctx context.Context, env []string, args ...string) result {
	if env == nil {
		env = directEnv()
	}
	cmd := exec.CommandContext(ctx, fleetplanBin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return result{code, out.String(), errb.String()}
}

// proc is a controller running in the background.
type proc struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	code int
}

type lockedWriter struct{ p *proc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.out.Write(b)
}

func start(ctx context.Context, env []string, args ...string) (*proc, error) {
	if env == nil {
		env = directEnv()
	}
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.CommandContext(ctx, fleetplanBin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = lockedWriter{p}, lockedWriter{p}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := p.cmd.Wait()
		p.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -1
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *proc) kill() {
	_ = p.cmd.Process.Kill() // SIGKILL
	<-p.done
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// policySpec is one release of the suite's application.
type policySpec struct {
	App, Version string
	Env          map[string]string
}

// writePolicy writes a short policy of the demo application (canary of
// one device per class soaking 6 s, one wave to 100 % soaking 3 s, the
// four layers, no failure budget; devices offline after their switch are
// tolerated up to half a stage, so a frozen or powered-off device is not a
// reason to roll a good release back).
func writePolicy(t *testing.T, dir string, s policySpec) string {
	t.Helper()
	jobspec := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	var env strings.Builder
	for _, k := range sortedKeys(s.Env) {
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
    soak    = "6s"
  }
  wave {
    percent = 100
    soak    = "3s"
  }
  health {
    grace = "3s"
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
      max_latency = "500ms"
      interval    = "2s"
    }
  }
  rollback {
    max_failure_percent              = 0
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 400
    max_offline_after_switch_percent = 50
    scope                            = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, s.App, jobspec, s.Version, env.String())
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", s.App, s.Version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// installAgent makes sure the device agent runs on every device and has
// registered its node checks (the pre-flight checklist stops a rollout
// with layers 2-4 without it). Left installed when it was there before.
func installAgent(t *testing.T, ctx context.Context, c *testcluster.Cluster) {
	t.Helper()
	_, _, err := c.Nomad.Jobs().Info("fleetplan-agent", nil)
	existed := err == nil
	res := fleetplan(ctx, nil, "agent", "install", "-default-system", "cpu=off")
	if res.code != 0 {
		t.Fatalf("agent install exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !existed {
		t.Cleanup(func() {
			if res := fleetplan(context.Background(), nil, "agent", "uninstall"); res.code != 0 {
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

// removeApp removes everything the suite's application left on the
// cluster: slot jobs, slot metadata, KV state, audit, agent config, and
// the quarantines of its rollouts.
func removeApp(t *testing.T, c *testcluster.Cluster, app string) {
	t.Helper()
	for _, slot := range []string{"blue", "green"} {
		_, _, _ = c.Nomad.Jobs().Deregister(app+"-"+slot, true, nil)
	}
	for _, name := range c.Devices {
		nodes, _, err := c.Nomad.Nodes().List(&nomad.QueryOptions{Filter: `Name == "` + name + `"`})
		if err != nil || len(nodes) != 1 {
			continue
		}
		key := "fleetplan." + app + ".slot"
		_, _ = c.Nomad.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: nodes[0].ID, Meta: map[string]*string{key: nil}}, nil)
	}
	for _, p := range []string{"fleetplan/rollouts/" + app, "fleetplan/apps/" + app, "fleetplan/audit/" + app, "fleetplan/agent/apps/" + app} {
		_, _ = c.Consul.KV().DeleteTree(p, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	list := fleetplan(ctx, nil, "registry", "list", "-json", "-status", "quarantined")
	var devs []struct{ Name, Reason string }
	_ = json.Unmarshal([]byte(list.stdout), &devs)
	for _, d := range devs {
		if strings.Contains(d.Reason, "rollout "+app+" ") {
			fleetplan(ctx, nil, "registry", "release", d.Name)
		}
	}
}

// waitReady waits until every device is a ready Nomad node (after thaws
// and power-ons).
func waitReady(t *testing.T, c *testcluster.Cluster, timeout time.Duration) {
	t.Helper()
	testcluster.Eventually(t, timeout, func() (bool, string) {
		var notReady []string
		for _, d := range c.Devices {
			if st, _ := c.NodeStatus(d); st != "ready" {
				notReady = append(notReady, d+"="+st)
			}
		}
		return len(notReady) == 0, fmt.Sprintf("devices not ready: %v", notReady)
	})
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if keys[j] < keys[i] {
				keys[i], keys[j] = keys[j], keys[i]
			}
		}
	}
	return keys
}

// waitHealthy waits until every device is ready and every Consul check on
// it (the agents' node checks, the application's instance checks) passes.
func waitHealthy(t *testing.T, c *testcluster.Cluster, timeout time.Duration) {
	t.Helper()
	waitReady(t, c, timeout)
	testcluster.Eventually(t, timeout, func() (bool, string) {
		var bad []string
		for _, d := range c.Devices {
			checks, _, err := c.Consul.Health().Node(d, nil)
			if err != nil {
				return false, err.Error()
			}
			for _, ch := range checks {
				if ch.Status == "critical" {
					bad = append(bad, d+": "+ch.Name)
				}
			}
		}
		return len(bad) == 0, fmt.Sprintf("checks not passing: %v", bad)
	})
}
