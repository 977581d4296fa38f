//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	nomad "github.com/hashicorp/nomad/api"
)

// A webhook on loopback receives the notifications of a real rollout; its
// path comes from apply's environment and its token from a Nomad Variable,
// and neither appears anywhere else: not in apply's output and logs, not in
// Consul KV.
func TestIntegrationNotifyWebhook(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-notify"
	cleanup(t, c, app)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	const pathSecret, token = "p4th-it-s3cr3t", "t0ken-it-s3cr3t"
	type got struct {
		Kind, Rollout, Version, Phase, Notifier string
		Auth, Path                              string
	}
	var mu sync.Mutex
	var notes []got
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n got
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("webhook payload: %v", err)
		}
		n.Auth, n.Path = r.Header.Get("Authorization"), r.URL.Path
		mu.Lock()
		notes = append(notes, n)
		mu.Unlock()
	}))
	srv.Listener = l
	srv.Start()
	defer srv.Close()
	t.Setenv("FP_IT_HOOK_PATH", pathSecret)
	// The token is an item of a Nomad Variable, read by apply's Nomad client.
	const varPath = "fleetplan/it-notify"
	if _, _, err := c.Nomad.Variables().Create(&nomad.Variable{Path: varPath, Items: nomad.VariableItems{"token": token}}, nil); err != nil {
		t.Fatalf("creating the Nomad Variable %s: %v", varPath, err)
	}
	t.Cleanup(func() { _, _ = c.Nomad.Variables().Delete(varPath, nil) })

	path := policy(t, dir, app, "1.0.0", nil, "wave")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blocks := fmt.Sprintf(`
  notify "webhook" "it" {
    url     = "%s/hook/${env.FP_IT_HOOK_PATH}"
    headers = { Authorization = "Bearer ${nomad_var("fleetplan/it-notify", "token")}" }
  }
  notify "log" "audit" {}
}
`, srv.URL)
	s := strings.TrimSuffix(strings.TrimRight(string(src), "\n"), "}") + blocks
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}

	plan := fleetplan(t, ctx, "plan", "-json", path)
	res := fleetplan(t, ctx, "-log-level", "info", "apply", "-auto-approve", path)
	if res.code != 0 {
		t.Fatalf("apply exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitFleet(t, c, app, "blue", "1.0.0")

	mu.Lock()
	defer mu.Unlock()
	kinds := map[string]int{}
	for _, n := range notes {
		kinds[n.Kind]++
		if n.Rollout != app || n.Version != "1.0.0" || n.Notifier != "it" || n.Auth != "Bearer "+token || n.Path != "/hook/"+pathSecret {
			t.Errorf("notification %+v", n)
		}
	}
	if kinds["phase"] == 0 || kinds["done"] != 1 || notes[len(notes)-1].Kind != "done" {
		t.Errorf("kinds %v, want phase notifications and one done, last", kinds)
	}
	if !strings.Contains(res.stderr, "notification delivered: notifier=webhook.it kind=done") || !strings.Contains(res.stderr, "notify.audit") {
		t.Errorf("apply's log does not record the deliveries:\n%s", res.stderr)
	}
	kv, _, err := c.Consul.KV().List("fleetplan/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for what, out := range map[string]string{"apply's output": res.stdout + res.stderr, "plan -json": plan.stdout + plan.stderr} {
		if strings.Contains(out, token) || strings.Contains(out, pathSecret) {
			t.Errorf("%s shows a secret:\n%s", what, out)
		}
	}
	for _, p := range kv {
		if strings.Contains(string(p.Value), token) || strings.Contains(string(p.Value), pathSecret) {
			t.Errorf("Consul KV %s holds a secret", p.Key)
		}
	}
	t.Logf("%d notifications: %v; %d KV entries checked", len(notes), kinds, len(kv))
}
