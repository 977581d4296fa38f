//go:build integration

package acl_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

var fleetplanBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetplan-acl-itest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
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

// aclEnv is the dev cluster in ACL mode: its tokens (by file name without
// .token) and clients holding the bootstrap tokens, for set-up and for
// reading the ground truth only.
type aclEnv struct {
	state   string
	tokens  map[string]string
	nomad   *nomad.Client
	consul  *consul.Client
	devices []string

	mu   sync.Mutex
	logs bytes.Buffer // everything every fleetplan run printed
}

func stateDir() string {
	if d := os.Getenv("FLEETPLAN_DEV_DIR"); d != "" {
		return d
	}
	return filepath.Join(testcluster.RepoRoot(), ".dev-cluster")
}

func setup(t *testing.T) *aclEnv {
	t.Helper()
	state := stateDir()
	mode, _ := os.ReadFile(filepath.Join(state, "mode"))
	if strings.TrimSpace(string(mode)) != "acl" {
		t.Skipf("the dev cluster in %s is not in ACL mode; `make test-acl` starts it so and runs this test", state)
	}
	c := testcluster.Require(t)
	e := &aclEnv{state: state, tokens: map[string]string{}, devices: c.Devices}
	files, err := filepath.Glob(filepath.Join(state, "acl", "*.token"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tokens in %s/acl (%v): start the cluster with ACL=1 dev-cluster/cluster.sh up", state, err)
	}
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("token file %s has mode %o, want 600", f, st.Mode().Perm())
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[strings.TrimSuffix(filepath.Base(f), ".token")] = strings.TrimSpace(string(b))
	}
	for _, need := range []string{"nomad.bootstrap", "consul.bootstrap", "controller.nomad", "controller.consul", "operator.nomad", "operator.consul", "agent.nomad", "agent.consul"} {
		if e.tokens[need] == "" {
			t.Fatalf("token %s missing in %s/acl", need, state)
		}
	}
	ncfg := nomad.DefaultConfig()
	ncfg.Address, ncfg.SecretID = "http://127.0.0.1:4646", e.tokens["nomad.bootstrap"]
	if e.nomad, err = nomad.NewClient(ncfg); err != nil {
		t.Fatal(err)
	}
	ccfg := consul.DefaultConfig()
	ccfg.Address, ccfg.Token = "127.0.0.1:8500", e.tokens["consul.bootstrap"]
	if e.consul, err = consul.NewClient(ccfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// environ is the environment of a fleetplan run as role: controller,
// operator or bootstrap (set-up only).
func (e *aclEnv) environ(role string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NOMAD_TOKEN=") || strings.HasPrefix(kv, "CONSUL_HTTP_TOKEN=") || strings.HasPrefix(kv, "FLEETPLAN_LOG_LEVEL=") {
			continue
		}
		env = append(env, kv)
	}
	nomadTok, consulTok := e.tokens[role+".nomad"], e.tokens[role+".consul"]
	if role == "bootstrap" {
		nomadTok, consulTok = e.tokens["nomad.bootstrap"], e.tokens["consul.bootstrap"]
	}
	return append(env,
		"NOMAD_ADDR=http://127.0.0.1:4646", "CONSUL_HTTP_ADDR=127.0.0.1:8500",
		// Debug logs: the grep below reads everything fleetplan says.
		"FLEETPLAN_LOG_LEVEL=debug",
		"NOMAD_TOKEN="+nomadTok, "CONSUL_HTTP_TOKEN="+consulTok)
}

type result struct {
	code           int
	stdout, stderr string
}

// syncBuffer is an output a test reads while the process writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (e *aclEnv) keep(s string) {
	e.mu.Lock()
	e.logs.WriteString(s)
	e.mu.Unlock()
}

func (e *aclEnv) run(t *testing.T, ctx context.Context, role string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(ctx, fleetplanBin, args...)
	cmd.Env = e.environ(role)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running fleetplan %v: %v", args, err)
	}
	e.keep(out.String() + errb.String())
	return result{code, out.String(), errb.String()}
}

// start runs fleetplan in the background; wait returns its exit code.
func (e *aclEnv) start(t *testing.T, ctx context.Context, role string, args ...string) (out *syncBuffer, wait func() int) {
	t.Helper()
	cmd := exec.CommandContext(ctx, fleetplanBin, args...)
	cmd.Env = e.environ(role)
	out = &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() {
		err := cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		done <- code
	}()
	var once sync.Once
	var code int
	wait = func() int {
		once.Do(func() {
			code = <-done
			e.keep(out.String())
		})
		return code
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		wait()
	})
	return out, wait
}

// policy is a small policy of the demo application with the four layers
// (the device agent's layer 2 and 4 checks must work with its tokens).
func policy(t *testing.T, dir, app, version string, env map[string]string) string {
	t.Helper()
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
      path         = "/health"
      interval     = "1s"
      timeout      = "1s"
      max_restarts = 1
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
    max_failure_percent = 0
    scope               = "fleet"
  }
  offline { max_offline_percent = 50 }
}
`, app, filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl"), version, envLines.String())
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.fleet.hcl", app, version))
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// serveBinary serves the fleetplan binary on loopback as
// /fleetplan_linux_<GOARCH> and returns the URL template the agent job
// gets (with ${attr.cpu.arch}) and the binary's sha256.
func serveBinary(t *testing.T) (url, sum string) {
	t.Helper()
	b, err := os.ReadFile(fleetplanBin)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /fleetplan_linux_"+runtime.GOARCH, func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, fleetplanBin)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/fleetplan_linux_${attr.cpu.arch}", "sha256:" + hex.EncodeToString(h[:])
}

// agentChecksPass waits until every device's agent node checks pass.
func (e *aclEnv) agentChecksPass(t *testing.T) {
	t.Helper()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		var missing []string
		for _, name := range e.devices {
			checks, _, err := e.consul.Health().Node(name, nil)
			if err != nil {
				return false, err.Error()
			}
			n := 0
			for _, ch := range checks {
				if (ch.CheckID == "fleetplan-L1-connectivity" || ch.CheckID == "fleetplan-L2-system") && ch.Status == consul.HealthPassing {
					n++
				}
			}
			if n < 2 {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, fmt.Sprintf("the device agent's node checks do not pass on %v", missing)
	})
}

// fleetOn waits until every device's slot metadata names slot and runs a
// live allocation of app's slot job.
func (e *aclEnv) fleetOn(t *testing.T, app, slot string) {
	t.Helper()
	testcluster.Eventually(t, 90*time.Second, func() (bool, string) {
		nodes, _, err := e.nomad.Nodes().List(nil)
		if err != nil {
			return false, err.Error()
		}
		var wrong []string
		for _, stub := range nodes {
			n, _, err := e.nomad.Nodes().Info(stub.ID, nil)
			if err != nil {
				return false, err.Error()
			}
			if got := n.Meta["fleetplan."+app+".slot"]; got != slot {
				wrong = append(wrong, fmt.Sprintf("%s slot %q", n.Name, got))
				continue
			}
			allocs, _, err := e.nomad.Nodes().Allocations(stub.ID, nil)
			if err != nil {
				return false, err.Error()
			}
			live := 0
			for _, a := range allocs {
				if strings.HasPrefix(a.JobID, app+"-") && a.DesiredStatus == "run" && a.ClientStatus == "running" {
					if a.JobID != app+"-"+slot {
						wrong = append(wrong, n.Name+" runs "+a.JobID)
					}
					live++
				}
			}
			if live != 1 {
				wrong = append(wrong, fmt.Sprintf("%s has %d live allocations", n.Name, live))
			}
		}
		return len(wrong) == 0, fmt.Sprintf("fleet not on %s-%s: %v", app, slot, wrong)
	})
}

func (e *aclEnv) waitOutput(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	testcluster.Eventually(t, 3*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), want), "waiting for " + want + " in:\n" + out.String()
	})
}

// TestIntegrationACLRolloutWithLeastPrivilege: on the dev cluster in ACL
// mode, the device agent installed from an artifact URL with its tokens in
// a Nomad Variable; a rollout approved by the operator, a crashing release
// rolled back by itself and a release rolled back on the operator's
// request, with only the controller's and the operator's tokens; the
// recorded actors come from the operator's token; and no secret of any
// token shows up in fleetplan's output, the agents' logs, Consul KV, Nomad
// job specs, Consul check definitions, the audit trail or any process's
// arguments.
func TestIntegrationACLRolloutWithLeastPrivilege(t *testing.T) {
	e := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	app := "it-acl"
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, slot := range []string{"blue", "green"} {
			_, _, _ = e.nomad.Jobs().Deregister(app+"-"+slot, true, nil)
		}
		nodes, _, _ := e.nomad.Nodes().List(nil)
		for _, n := range nodes {
			_, _ = e.nomad.Nodes().Meta().Apply(&nomad.NodeMetaApplyRequest{NodeID: n.ID, Meta: map[string]*string{"fleetplan." + app + ".slot": nil}}, nil)
		}
		for _, p := range []string{"fleetplan/rollouts/" + app, "fleetplan/apps/" + app, "fleetplan/audit/" + app, "fleetplan/agent/apps/" + app} {
			_, _ = e.consul.KV().DeleteTree(p, nil)
		}
		// The agent as the dev cluster runs it: the local binary.
		e.run(t, context.Background(), "bootstrap", "agent", "install", "-token-from-variable", "-default-system", "cpu=off")
	})

	// The device agent: fetched from a URL by Nomad's artifact block, its
	// tokens written to its Nomad Variable from the token files.
	url, sum := serveBinary(t)
	res := e.run(t, ctx, "bootstrap", "agent", "install", "-default-system", "cpu=off",
		"-artifact", url, "-checksum", sum,
		"-consul-token-file", filepath.Join(e.state, "acl", "agent.consul.token"),
		"-nomad-token-file", filepath.Join(e.state, "acl", "agent.nomad.token"))
	if res.code != 0 {
		t.Fatalf("agent install exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	job, _, err := e.nomad.Jobs().Info("fleetplan-agent", nil)
	if err != nil {
		t.Fatal(err)
	}
	task := job.TaskGroups[0].Tasks[0]
	if len(task.Artifacts) != 1 || len(task.Templates) != 1 || task.Config["command"] != "local/fleetplan" {
		t.Fatalf("agent job: %d artifacts, %d templates, command %v; want the artifact and the tokens template", len(task.Artifacts), len(task.Templates), task.Config["command"])
	}
	e.agentChecksPass(t)
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		allocs, _, err := e.nomad.Jobs().Allocations("fleetplan-agent", false, nil)
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, a := range allocs {
			if a.DesiredStatus == "run" && a.ClientStatus == "running" && a.JobVersion == *job.Version {
				running++
			}
		}
		return running == len(e.devices), fmt.Sprintf("%d of %d devices run the agent from the artifact", running, len(e.devices))
	})

	// Least privilege holds: each token is refused what its role does not
	// do (and granted what it does: the rollout below).
	e.refusals(t)

	// 1.0.0: the controller waits for approval; the operator approves.
	out, wait := e.start(t, ctx, "controller", "apply", policy(t, dir, app, "1.0.0", nil))
	e.waitOutput(t, out, "fleetplan approve")
	ap := e.run(t, ctx, "operator", "approve", "-m", "acl test", "-actor", "tester@ci", app)
	if ap.code != 0 {
		t.Fatalf("approve with the operator token exited %d\n%s\n%s", ap.code, ap.stdout, ap.stderr)
	}
	if code := wait(); code != 0 {
		t.Fatalf("apply 1.0.0 with the controller token exited %d\n%s", code, out.String())
	}
	e.fleetOn(t, app, "blue")

	// 2.0.0 crashes at start: the canary catches it, the controller rolls
	// it back by itself.
	res = e.run(t, ctx, "controller", "apply", "-auto-approve", policy(t, dir, app, "2.0.0", map[string]string{"EDGEINFER_FAULT_CRASH": "1"}))
	if res.code != 1 {
		t.Fatalf("apply of a crashing 2.0.0 exited %d, want 1 (rolled back)\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	e.fleetOn(t, app, "blue")

	// 3.0.0: the operator asks for the rollback while it waits for
	// approval.
	out, wait = e.start(t, ctx, "controller", "apply", policy(t, dir, app, "3.0.0", nil))
	e.waitOutput(t, out, "fleetplan approve")
	rb := e.run(t, ctx, "operator", "rollback", "-reason", "acl test", app)
	if rb.code != 0 {
		t.Fatalf("rollback with the operator token exited %d\n%s\n%s", rb.code, rb.stdout, rb.stderr)
	}
	if code := wait(); code != 1 {
		t.Fatalf("apply 3.0.0 after the operator's rollback exited %d, want 1\n%s", code, out.String())
	}
	e.fleetOn(t, app, "blue")

	// 4.0.0 through the controller service: installed with its tokens in
	// its Nomad Variable, submitted by the operator, carried out (and
	// notified, with a secret from a Nomad Variable) with the
	// controller's tokens.
	hook := e.serviceRollout(t, ctx, dir, app)

	// Who approved and who asked for the rollback: the operator's token.
	au := e.run(t, ctx, "operator", "audit", "-json", "-rollout", app)
	var recs []struct {
		Action string `json:"action"`
		Actor  string `json:"actor"`
	}
	if err := json.Unmarshal([]byte(au.stdout), &recs); err != nil {
		t.Fatalf("audit -json with the operator token: %v\n%s\n%s", err, au.stdout, au.stderr)
	}
	seen := map[string]string{}
	for _, r := range recs {
		if r.Action == "approve" || r.Action == "rollback-request" {
			seen[r.Action] = r.Actor
		}
	}
	for _, action := range []string{"approve", "rollback-request"} {
		actor := seen[action]
		if !strings.HasPrefix(actor, "token:fleetplan-operator (accessor ") {
			t.Errorf("the %s record's actor is %q, want the operator's token", action, actor)
		}
	}
	if !strings.Contains(seen["approve"], `comment "tester@ci"`) {
		t.Errorf("the approval's actor %q lacks the -actor comment", seen["approve"])
	}

	e.grepSecrets(t, ctx, au.stdout, hook)
	e.uninstallService(t, ctx)
}

// The controller service's notification secret (an item of a Nomad
// Variable under fleetplan/notify/, which the controller's policy reads).
const (
	notifyVar    = "fleetplan/notify/it-acl"
	notifySecret = "n0tify-acl-s3cr3t-b34r3r"
)

// serviceRollout installs the controller service with its tokens from its
// Nomad Variable, waits for a leader, submits 4.0.0 with the operator's
// token, follows it to the end, and checks its webhook notifications (the
// header's secret read from a Nomad Variable with the controller's token).
// It returns what the webhook received, for the grep.
func (e *aclEnv) serviceRollout(t *testing.T, ctx context.Context, dir, app string) *syncBuffer {
	t.Helper()
	if _, _, err := e.nomad.Variables().Create(&nomad.Variable{Path: notifyVar, Items: nomad.VariableItems{"token": notifySecret}}, nil); err != nil {
		t.Fatalf("creating the Nomad Variable %s: %v", notifyVar, err)
	}
	t.Cleanup(func() { _, _ = e.nomad.Variables().Delete(notifyVar, nil) })
	type note struct{ Kind, Rollout, Version, Auth string }
	var mu sync.Mutex
	var notes []note
	received := &syncBuffer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n note
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook payload: %v", err)
		}
		n.Auth = r.Header.Get("Authorization")
		mu.Lock()
		notes = append(notes, n)
		mu.Unlock()
		fmt.Fprintf(received, "%+v\n", n)
	}))
	t.Cleanup(srv.Close)

	// The controllers run the binary under test; the job is installed by
	// the cluster's administrator (it reads the controller's Variable).
	res := e.run(t, ctx, "bootstrap", "controller", "install", "-token-from-variable", "-command", fleetplanBin, "-log-level", "debug")
	if res.code != 0 {
		t.Fatalf("controller install exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	t.Cleanup(func() { e.uninstallService(t, context.Background()) })
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		entries, _, err := e.consul.Health().Service("fleetplan-controller", "", false, nil)
		if err != nil {
			return false, err.Error()
		}
		roles := map[string]int{}
		for _, en := range entries {
			addr := en.Service.Address
			if addr == "" {
				addr = en.Node.Address
			}
			role, err := controllerRole(fmt.Sprintf("%s:%d", addr, en.Service.Port))
			if err != nil {
				return false, err.Error()
			}
			roles[role]++
		}
		return roles["leader"] == 1, fmt.Sprintf("controller instances' roles %v, want a leader", roles)
	})

	// The operator submits (the request under fleetplan/rollouts/<app>/,
	// its audit record) and follows; the controller acts.
	file := policy(t, dir, app, "4.0.0", nil)
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSuffix(strings.TrimRight(string(src), "\n"), "}") + fmt.Sprintf(`
  notify "webhook" "acl" {
    url     = %q
    headers = { Authorization = "Bearer ${nomad_var(%q, "token")}" }
    events  = ["phase", "done"]
  }
}
`, srv.URL+"/hook", notifyVar)
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	submitted := time.Now()
	res = e.run(t, ctx, "operator", "apply", "-auto-approve", file)
	if res.code != 0 || !strings.Contains(res.stdout, "submitted to the fleetplan controller service") {
		t.Fatalf("apply (submitted to the service) with the operator's token exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	// The operator may not parse or plan a job on Nomad: apply says so
	// and the service plans (acl/README.md).
	if !strings.Contains(res.stderr, "warning: could not plan "+app+" here") {
		t.Errorf("apply with the operator's token did not warn that it could not plan:\n%s", res.stderr)
	}
	t.Logf("measured: the service's rollout of 4.0.0, submitted by the operator: %s", time.Since(submitted).Round(time.Second))
	e.fleetOn(t, app, "green")
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(notes) > 0 && notes[len(notes)-1].Kind == "done", fmt.Sprintf("%d notifications, no done yet", len(notes))
	})
	mu.Lock()
	defer mu.Unlock()
	phases := 0
	for _, n := range notes {
		if n.Kind == "phase" {
			phases++
		}
		if n.Rollout != app || n.Version != "4.0.0" || n.Auth != "Bearer "+notifySecret {
			t.Errorf("notification %+v (Authorization from the Nomad Variable %s)", n, notifyVar)
		}
	}
	if phases == 0 {
		t.Errorf("no phase notification among %d", len(notes))
	}
	return received
}

// controllerRole is the role /v1/health of a controller instance reports.
func controllerRole(addr string) (string, error) {
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/v1/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h struct {
		Role string `json:"role"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", fmt.Errorf("/v1/health of %s: %w", addr, err)
	}
	return h.Role, nil
}

// uninstallService purges the controller job and waits until no
// controller holds the leadership (apply runs in-process again).
func (e *aclEnv) uninstallService(t *testing.T, ctx context.Context) {
	t.Helper()
	if job, _, err := e.nomad.Jobs().Info("fleetplan-controller", nil); err != nil || job == nil {
		return
	}
	if res := e.run(t, ctx, "bootstrap", "controller", "uninstall"); res.code != 0 {
		t.Errorf("controller uninstall exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		pair, _, err := e.consul.KV().Get("fleetplan/controller/leader", nil)
		return err == nil && (pair == nil || pair.Session == ""), "the leadership lock is still held"
	})
}

// refusals checks that each role's token is refused (403) the calls of
// the other roles, and granted a call of its own.
func (e *aclEnv) refusals(t *testing.T) {
	t.Helper()
	nodes, _, err := e.nomad.Nodes().List(nil)
	if err != nil || len(nodes) == 0 {
		t.Fatalf("listing nodes: %v", err)
	}
	unset := `{"NodeID":"` + nodes[0].ID + `","Meta":{"fleetplan.acl-test":null}}`
	parse := `{"JobHCL":"job \"x\" {\n type = \"system\"\n group \"g\" {\n task \"t\" {\n driver = \"raw_exec\"\n config { command = \"/bin/true\" }\n }\n }\n}"}`
	const n, c = "http://127.0.0.1:4646", "http://127.0.0.1:8500"
	for _, k := range []struct {
		what, method, url, token, body string
		want                           int
	}{
		{"switching a device (dynamic node metadata) with the operator's token", "POST", n + "/v1/client/metadata", "operator.nomad", unset, 403},
		{"switching a device with the controller's token", "POST", n + "/v1/client/metadata", "controller.nomad", unset, 200},
		{"parsing a jobspec with the operator's token", "POST", n + "/v1/jobs/parse", "operator.nomad", parse, 403},
		{"parsing a jobspec with the controller's token", "POST", n + "/v1/jobs/parse", "controller.nomad", parse, 200},
		{"reading a Nomad agent with the operator's token", "GET", n + "/v1/agent/self", "operator.nomad", "", 403},
		{"reading a Nomad agent with the agent's token", "GET", n + "/v1/agent/self", "agent.nomad", "", 200},
		{"reading the device agent's tokens (a Nomad Variable outside fleetplan/notify) with the controller's token", "GET", n + "/v1/var/nomad/jobs/fleetplan-agent", "controller.nomad", "", 403},
		{"writing an agent config with the agent's token (read only)", "PUT", c + "/v1/kv/fleetplan/agent/apps/acl-test", "agent.consul", "x", 403},
		{"writing rollout state with the agent's token", "PUT", c + "/v1/kv/fleetplan/rollouts/acl-test/state", "agent.consul", "x", 403},
		{"creating a session with the agent's token", "PUT", c + "/v1/session/create", "agent.consul", `{"TTL":"10s","Behavior":"delete"}`, 403},
		{"writing outside fleetplan/ with the controller's token", "PUT", c + "/v1/kv/acl-test", "controller.consul", "x", 403},
		{"writing the active slot with the operator's token", "PUT", c + "/v1/kv/fleetplan/apps/acl-test", "operator.consul", "x", 403},
	} {
		req, err := http.NewRequest(k.method, k.url, strings.NewReader(k.body))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(k.url, n) {
			req.Header.Set("X-Nomad-Token", e.tokens[k.token])
		} else {
			req.Header.Set("X-Consul-Token", e.tokens[k.token])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", k.what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		e.keep(string(body))
		if resp.StatusCode != k.want {
			t.Errorf("%s: %d %s, want %d", k.what, resp.StatusCode, strings.TrimSpace(string(body)), k.want)
		}
	}
}

// grepSecrets fails the test for every token secret found in a place a
// secret must never be.
func (e *aclEnv) grepSecrets(t *testing.T, ctx context.Context, auditJSON string, hook *syncBuffer) {
	t.Helper()
	sources := map[string]string{}
	e.mu.Lock()
	sources["fleetplan output and logs"] = e.logs.String()
	e.mu.Unlock()
	sources["audit trail"] = auditJSON
	// The webhook received the notification secret (the test checked it):
	// it must be there, so that finding it nowhere else means something.
	if !strings.Contains(hook.String(), notifySecret) {
		t.Fatalf("the webhook never received the notification secret: the grep for it would prove nothing")
	}

	var kv strings.Builder
	pairs, _, err := e.consul.KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pairs {
		kv.WriteString(p.Key + "=" + string(p.Value) + "\n")
	}
	if !strings.Contains(kv.String(), "fleetplan/rollouts/it-acl/") {
		t.Fatalf("Consul KV has no state of it-acl: the grep would look at nothing")
	}
	sources["Consul KV"] = kv.String()

	var specs strings.Builder
	jobs, _, err := e.nomad.Jobs().List(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		var raw json.RawMessage
		if _, err := e.nomad.Raw().Query("/v1/job/"+j.ID, &raw, nil); err != nil {
			t.Fatal(err)
		}
		specs.Write(raw)
	}
	if !strings.Contains(specs.String(), "nomadVar") {
		t.Fatalf("no job spec has the agent's template: the grep would miss the agent job")
	}
	sources["Nomad job specs"] = specs.String()

	checks, _, err := e.consul.Health().State(consul.HealthAny, nil)
	if err != nil {
		t.Fatal(err)
	}
	defs, _ := json.Marshal(checks)
	sources["Consul checks"] = string(defs)
	if strings.Contains(string(defs), "Bearer") || strings.Contains(string(defs), `"Authorization"`) {
		t.Errorf("a Consul check definition carries an Authorization header")
	}

	// The agents' and the controllers' own logs (their tokens are in
	// env files under the allocations' secrets/, which is where they
	// belong: not grepped).
	taskLogs := func(job, task string, want int) string {
		var logs strings.Builder
		allocs, _, err := e.nomad.Jobs().Allocations(job, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		read := 0
		for _, a := range allocs {
			for _, typ := range []string{"stdout", "stderr"} {
				resp, err := e.nomad.Raw().Response(fmt.Sprintf("/v1/client/fs/logs/%s?task=%s&type=%s&origin=start&offset=0&plain=true", a.ID, task, typ), nil)
				if err != nil {
					t.Errorf("reading the %s of %s allocation %s: %v", typ, job, a.ID, err)
					continue
				}
				_, err = io.Copy(&logs, resp)
				resp.Close()
				if err == nil {
					read++
				}
			}
		}
		if read < 2*want {
			t.Errorf("read %d log streams of %s, want at least %d: the grep would miss them", read, job, 2*want)
		}
		return logs.String()
	}
	sources["device agent logs"] = taskLogs("fleetplan-agent", "agent", len(e.devices))
	ctlLogs := taskLogs("fleetplan-controller", "controller", 2)
	if !strings.Contains(ctlLogs, "notification delivered") {
		t.Errorf("the controllers' logs do not record a delivered notification: the grep would look at the wrong logs")
	}
	sources["controller service logs"] = ctlLogs

	// Every process's arguments (the agents' and the controllers' among
	// them).
	var cmdlines strings.Builder
	agents, controllers := 0, 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 1 && strings.HasSuffix(args[0], "fleetplan") && args[1] == "agent" {
			agents++
		}
		if len(args) > 1 && args[0] == fleetplanBin && args[1] == "controller" {
			controllers++
		}
		cmdlines.WriteString(strings.ReplaceAll(string(b), "\x00", " ") + "\n")
	}
	if agents < len(e.devices) {
		t.Errorf("found %d device agent processes, want %d: the grep would miss their arguments", agents, len(e.devices))
	}
	if controllers < 2 {
		t.Errorf("found %d controller service processes, want 2: the grep would miss their arguments", controllers)
	}
	sources["process arguments"] = cmdlines.String()

	secrets := map[string]string{"notification (Nomad Variable " + notifyVar + ")": notifySecret}
	for name, secret := range e.tokens {
		secrets["token "+name] = secret
	}
	for name, secret := range secrets {
		if len(secret) < 16 {
			t.Fatalf("%s is too short to grep for", name)
		}
		for where, text := range sources {
			if n := strings.Count(text, secret); n > 0 {
				t.Errorf("the secret of %s appears %d times in %s", name, n, where)
			}
		}
	}
	t.Logf("grepped %d secrets over %d sources (%d KV pairs, %d jobs, %d checks, %d processes, %d agent and %d controller processes)",
		len(secrets), len(sources), len(pairs), len(jobs), len(checks), len(procs), agents, controllers)
}
