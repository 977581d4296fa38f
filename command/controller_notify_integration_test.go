//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// TestIntegrationControllerServiceNotifies: a rollout submitted to a
// controller service (a `fleetplan controller` process) with a notify
// "webhook" block delivers its events to a loopback webhook; the hook's
// URL comes from env.FP_IT_CTL_HOOK_PATH in the CONTROLLER's environment
// (apply's has none) and its Authorization header from a Nomad Variable,
// and neither secret is in Consul KV (the request carries the policy with
// the references only) nor in apply's output.
func TestIntegrationControllerServiceNotifies(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-ctl-notify"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	if _, ok := os.LookupEnv("FP_IT_CTL_HOOK_PATH"); ok {
		t.Fatal("FP_IT_CTL_HOOK_PATH is set in the test's environment: apply would see it too")
	}

	const pathSecret, token = "ctl-p4th-s3cr3t", "ctl-t0ken-s3cr3t"
	type note struct {
		Kind     string `json:"kind"`
		Notifier string `json:"notifier"`
		Rollout  string `json:"rollout"`
		RunID    string `json:"run_id"`
		Version  string `json:"version"`
		Phase    string `json:"phase"`
		Auth     string `json:"-"`
		Path     string `json:"-"`
	}
	var mu sync.Mutex
	var notes []note
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n note
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook payload: %v", err)
		}
		n.Auth, n.Path = r.Header.Get("Authorization"), r.URL.Path
		mu.Lock()
		notes = append(notes, n)
		mu.Unlock()
	}))
	defer srv.Close()
	const varPath = "fleetplan/notify/it-ctl-notify"
	if _, _, err := c.Nomad.Variables().Create(&nomad.Variable{Path: varPath, Items: nomad.VariableItems{"token": token}}, nil); err != nil {
		t.Fatalf("creating the Nomad Variable %s: %v", varPath, err)
	}
	t.Cleanup(func() { _, _ = c.Nomad.Variables().Delete(varPath, nil) })

	// The policy names its jobspec relatively (what a request carries),
	// with the notify block inside the rollout.
	dir := t.TempDir()
	file := policy(t, dir, app, "1.0.0", nil, "wave")
	jobspec, err := os.ReadFile(filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edgeinfer.nomad.hcl"), jobspec, 0o644); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(src), fmt.Sprintf("%q", filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")), `"edgeinfer.nomad.hcl"`, 1)
	s = strings.TrimSuffix(strings.TrimRight(s, "\n"), "}") + fmt.Sprintf(`
  notify "webhook" "svc" {
    url     = "%s/hook/${env.FP_IT_CTL_HOOK_PATH}"
    headers = { Authorization = "Bearer ${nomad_var(%q, "token")}" }
  }
}
`, srv.URL, varPath)
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}

	ctl := startNotifyingController(t, "ctl-notify", "FP_IT_CTL_HOOK_PATH="+pathSecret)
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
		h, err := health(ctl.addr)
		if err != nil {
			return false, err.Error()
		}
		return h.Role == "leader", "ctl-notify is " + h.Role
	})

	res := fleetplan(t, ctx, "apply", "-auto-approve", file)
	if res.code != 0 || !strings.Contains(res.stdout, "submitted to the fleetplan controller service") {
		t.Fatalf("apply (submitted to the service) exited %d\n%s\n%s\ncontroller log:\n%s", res.code, res.stdout, res.stderr, ctl.log.String())
	}
	st, err := readState(c, app)
	if err != nil || st == nil || st.Outcome != "succeeded" {
		t.Fatalf("the rollout's state: %+v %v", st, err)
	}
	waitFleet(t, c, app, st.Candidate, "1.0.0")

	// Deliveries are asynchronous: the done event may arrive after apply
	// saw the run finish.
	testcluster.Eventually(t, time.Minute, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return len(notes) > 0 && notes[len(notes)-1].Kind == "done", fmt.Sprintf("%d notifications, the last not done yet", len(notes))
	})
	mu.Lock()
	defer mu.Unlock()
	kinds := map[string]int{}
	phases := map[string]bool{}
	for _, n := range notes {
		kinds[n.Kind]++
		if n.Kind == "phase" {
			phases[n.Phase] = true
		}
		if n.Rollout != app || n.Version != "1.0.0" || n.Notifier != "svc" || n.RunID != st.ID ||
			n.Auth != "Bearer "+token || n.Path != "/hook/"+pathSecret {
			t.Errorf("notification %+v, want rollout %s 1.0.0 run %s from notifier svc with the secrets", n, app, st.ID)
		}
	}
	if kinds["done"] != 1 || !phases["CANARY"] || !phases["WAVE"] {
		t.Errorf("kinds %v, phases %v: want phase notifications of CANARY and WAVE and one done", kinds, phases)
	}
	if !regexp.MustCompile(`notification delivered: .*notifier=webhook\.svc kind=done`).MatchString(ctl.log.String()) {
		t.Errorf("the controller's log does not record the done delivery:\n%s", ctl.log.String())
	}
	for what, out := range map[string]string{"apply's output": res.stdout + res.stderr, "the controller's log": ctl.log.String()} {
		if strings.Contains(out, token) || strings.Contains(out, pathSecret) {
			t.Errorf("%s shows a secret:\n%s", what, out)
		}
	}
	kv, _, err := c.Consul.KV().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	request := false
	for _, p := range kv {
		if p.Key == "fleetplan/rollouts/"+app+"/request" {
			request = strings.Contains(string(p.Value), "env.FP_IT_CTL_HOOK_PATH")
		}
		if strings.Contains(string(p.Value), token) || strings.Contains(string(p.Value), pathSecret) {
			t.Errorf("Consul KV %s holds a secret", p.Key)
		}
	}
	if !request {
		t.Errorf("no request of %s with the policy's env reference in Consul KV: the grep looked at the wrong keys", app)
	}
	t.Logf("%d notifications from the controller service: %v; %d KV entries checked", len(notes), kinds, len(kv))
}

// startNotifyingController starts a `fleetplan controller` process with
// the test's environment plus env; at the end it stops it (SIGTERM) and
// waits until it gave the leadership back, so that the next tests' apply
// runs in-process.
func startNotifyingController(t *testing.T, name string, env ...string) *controllerProc {
	t.Helper()
	c := testcluster.Require(t)
	p := &controllerProc{name: name, addr: freePort(t), log: &syncBuffer{}}
	p.cmd = exec.Command(fleetplanBin, "controller", "-name", name, "-http-addr", p.addr, "-log-level", "debug",
		"-session-ttl", "10s", "-lock-delay", "1s", "-scan-interval", "1s")
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("log of controller %s:\n%s", p.name, p.log.String())
		}
		testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
			pair, _, err := c.Consul.KV().Get("fleetplan/controller/leader", nil)
			return err == nil && (pair == nil || pair.Session == ""), "the leadership lock is still held"
		})
	})
	return p
}
