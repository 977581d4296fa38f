package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fphcl "github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/store"
)

const testJobspec = `job "hello" {
  type = "system"
  group "web" {
    network {
      port "http" {}
    }
    task "web" {
      driver = "raw_exec"
      config {
        command = "python3"
      }
    }
  }
}
`

func testPolicy(jobspec, version string) string {
	return `rollout "hello" {
  fleet { selector = "Meta.fleet == \"vision\"" }
  release {
    jobspec = "` + jobspec + `"
    version = "` + version + `"
  }
  canary {
    percent = 5
    soak    = "10m"
  }
  wave {
    percent = 100
    soak    = "10m"
  }
  health {
    application { path = "/health" }
  }
  rollback {
    max_failure_percent = 0
  }
}
`
}

// writeTree writes files (path relative to dir -> content) and returns dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, src := range files {
		at := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(at), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(at, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func newTestRequests(t *testing.T, policyFile string) ([]*store.RolloutRequest, error) {
	t.Helper()
	policies, diags := fphcl.ParseFiles(policyFile)
	if diags.HasErrors() {
		t.Fatalf("the test policy does not parse: %v", diags)
	}
	return NewRequests(policyFile, policies, SubmitOptions{AutoApprove: true, SampleInterval: 3 * time.Second, Actor: "alice@laptop", Now: time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)})
}

// A request carries the policy and the jobspec it names (here through a
// relative path that leaves the policy's folder); once the operator's files
// are gone, the service parses it back to the same rollout.
func TestRequestRoundTripWithoutTheOperatorsFiles(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"policies/hello.fleet.hcl": testPolicy("../jobs/hello.nomad.hcl", "2.0.0"),
		"jobs/hello.nomad.hcl":     testJobspec,
	})
	reqs, err := newTestRequests(t, filepath.Join(dir, "policies", "hello.fleet.hcl"))
	if err != nil {
		t.Fatalf("NewRequests: %v", err)
	}
	if len(reqs) != 1 {
		t.Fatalf("got %d requests, want 1", len(reqs))
	}
	req := reqs[0]
	if req.App != "hello" || req.Version != "2.0.0" || !req.AutoApprove || time.Duration(req.SampleInterval) != 3*time.Second || req.Actor != "alice@laptop" {
		t.Errorf("request options: %+v", req)
	}
	if !strings.HasPrefix(req.ID, "q20261201T170000-") {
		t.Errorf("request ID %q does not start with the submission time", req.ID)
	}
	if len(req.Files) != 1 || req.Files[0].Source != testJobspec {
		t.Fatalf("the request does not hold the jobspec: %+v", req.Files)
	}
	// Through JSON, as in Consul KV, and with the operator's files gone.
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	var back store.RolloutRequest
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("decoding the request: %v", err)
	}
	if time.Duration(back.SampleInterval) != 3*time.Second {
		t.Errorf("sample interval through JSON: %v", time.Duration(back.SampleInterval))
	}
	p, cleanup, err := ParseRequest(&back)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	defer cleanup()
	if p.Name != "hello" || p.Release.Version != "2.0.0" {
		t.Errorf("parsed %s %s", p.Name, p.Release.Version)
	}
	if p.File != req.PolicyFile {
		t.Errorf("policy file %q, want the submitted %q", p.File, req.PolicyFile)
	}
	got, err := os.ReadFile(p.Release.Jobspec)
	if err != nil || string(got) != testJobspec {
		t.Errorf("the jobspec the service reads (%s): %q, %v", p.Release.Jobspec, got, err)
	}
	cleanup()
	if _, err := os.Stat(p.Release.Jobspec); !os.IsNotExist(err) {
		t.Errorf("cleanup left the parsed files behind: %v", err)
	}
}

// A jobspec named by an absolute path travels too: the service reads its
// copy, not a file of its own host.
func TestRequestWithAbsolutePaths(t *testing.T) {
	dir := writeTree(t, map[string]string{"jobs/hello.nomad.hcl": testJobspec})
	abs := filepath.Join(dir, "jobs", "hello.nomad.hcl")
	dir2 := writeTree(t, map[string]string{"hello.fleet.hcl": testPolicy(abs, "2.0.0")})
	reqs, err := newTestRequests(t, filepath.Join(dir2, "hello.fleet.hcl"))
	if err != nil {
		t.Fatalf("NewRequests with an absolute jobspec path: %v", err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	p, cleanup, err := ParseRequest(reqs[0])
	if err != nil {
		t.Fatalf("ParseRequest once the jobspec is gone from its path: %v", err)
	}
	defer cleanup()
	if p.Release.Jobspec == abs {
		t.Fatalf("the service would read %s on its own host", abs)
	}
	if got, err := os.ReadFile(p.Release.Jobspec); err != nil || string(got) != testJobspec {
		t.Errorf("the jobspec the service reads (%s): %q, %v", p.Release.Jobspec, got, err)
	}
}

// A request the service cannot use fails with the reason, never a panic.
func TestParseRequestRefusesBadRequests(t *testing.T) {
	good := func() *store.RolloutRequest {
		return &store.RolloutRequest{ID: "q1", App: "hello", Version: "2.0.0", PolicyFile: "/ops/hello.fleet.hcl",
			Policy: testPolicy("hello.nomad.hcl", "2.0.0"), Files: []store.RequestFile{{Path: "/ops/hello.nomad.hcl", Source: testJobspec}}}
	}
	if p, cleanup, err := ParseRequest(good()); err != nil || p == nil {
		t.Fatalf("the good request: %v", err)
	} else {
		cleanup()
	}
	cases := []struct {
		name, want string
		edit       func(r *store.RolloutRequest)
	}{
		{"no ID", "no ID", func(r *store.RolloutRequest) { r.ID = "" }},
		{"bad name", "must not contain", func(r *store.RolloutRequest) { r.App = "a/b" }},
		{"no policy", "no policy source", func(r *store.RolloutRequest) { r.Policy = "" }},
		{"policy does not parse", "not valid", func(r *store.RolloutRequest) { r.Policy = "rollout \"hello\" {" }},
		{"jobspec missing", "not valid", func(r *store.RolloutRequest) { r.Files = nil }},
		{"other rollout", `no rollout "other"`, func(r *store.RolloutRequest) { r.App = "other" }},
		{"version differs", "for version 2.0.0, the request for 3.0.0", func(r *store.RolloutRequest) { r.Version = "3.0.0" }},
		{"relative file path", "not a clean absolute path", func(r *store.RolloutRequest) { r.Files[0].Path = "hello.nomad.hcl" }},
		{"path escaping", "not a clean absolute path", func(r *store.RolloutRequest) { r.Files[0].Path = "/ops/../../etc/x" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := good()
			tc.edit(r)
			p, cleanup, err := ParseRequest(r)
			defer cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRequest: %v (policy %v), want an error containing %q", err, p, tc.want)
			}
		})
	}
}

// Outside the default namespace the rollout is named app.namespace (so one
// application in two namespaces does not collide): the request carries
// the namespace and the service finds the policy's rollout under that name.
func TestRequestInANamespace(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"hello.fleet.hcl": testPolicy("hello.nomad.hcl", "2.0.0"),
		"hello.nomad.hcl": testJobspec,
	})
	file := filepath.Join(dir, "hello.fleet.hcl")
	policies, diags := fphcl.ParseFiles(file)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	policies[0].Name = "hello.prod" // as operator.QualifyPolicies names it in namespace prod
	reqs, err := NewRequests(file, policies, SubmitOptions{Namespace: "prod"})
	if err != nil {
		t.Fatalf("NewRequests: %v", err)
	}
	if reqs[0].App != "hello.prod" || reqs[0].Namespace != "prod" {
		t.Fatalf("request names %q in namespace %q, want hello.prod in prod", reqs[0].App, reqs[0].Namespace)
	}
	p, cleanup, err := ParseRequest(reqs[0])
	defer cleanup()
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if p.Name != "hello.prod" {
		t.Errorf("parsed rollout is named %q, want hello.prod", p.Name)
	}
	// The same request without its namespace names no rollout of the policy.
	reqs[0].Namespace = ""
	if _, cleanup, err := ParseRequest(reqs[0]); err == nil || !strings.Contains(err.Error(), `has no rollout "hello.prod"`) {
		t.Errorf("ParseRequest without the namespace: %v, want no rollout hello.prod", err)
	} else {
		cleanup()
	}
}
