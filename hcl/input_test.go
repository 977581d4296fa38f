package hcl

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/plugin"
)

// Tests of the input fleetplan refuses (invariant I10) that the rule table
// of rules_test.go cannot hold: files above their size limit, and the
// values the accepted probe attributes decode into.

// sparseFile creates a file of size bytes that takes no disk space.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestFileSizeLimits checks the size limits of the policy file and of the
// jobspec it names: an error with the file, its size, the limit and what
// to do, at the jobspec attribute's line, or without a range for the policy
// file itself (like an unreadable file).
func TestFileSizeLimits(t *testing.T) {
	cases := []struct {
		name        string
		policySize  int64 // a policy of this size instead of basePolicy
		jobspecSize int64 // a jobspec of this size instead of testdata/app.nomad.hcl
		line        int   // of the diagnostic, 0: no range
		summary     string
		details     []string
	}{
		{name: "valid: jobspec at the limit", jobspecSize: MaxJobspecSize},
		{name: "jobspec above the limit", jobspecSize: MaxJobspecSize + 1, line: 8, summary: "Jobspec too large",
			details: []string{"big.nomad.hcl", "(1048577 bytes)", "at most 1 MiB", "artifact block"}},
		{name: "jobspec far above the limit", jobspecSize: 3 << 30, line: 8, summary: "Jobspec too large",
			details: []string{"3 GiB (3221225472 bytes)"}},
		{name: "policy above the limit", policySize: MaxPolicyFileSize + 1, summary: "Policy file too large",
			details: []string{"case.fleet.hcl", "1 MiB (1048577 bytes)", "at most 1 MiB", "check the path", "split its rollout blocks"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			job, _ := filepath.Abs("testdata/app.nomad.hcl")
			switch {
			case tc.jobspecSize > MaxJobspecSize:
				job = filepath.Join(dir, "big.nomad.hcl")
				sparseFile(t, job, tc.jobspecSize)
			case tc.jobspecSize > 0:
				// The real jobspec, padded with a comment to the size.
				data, err := os.ReadFile(job)
				if err != nil {
					t.Fatal(err)
				}
				pad := int(tc.jobspecSize) - len(data) - 2
				data = append(data, "#"+strings.Repeat("x", pad)+"\n"...)
				job = filepath.Join(dir, "big.nomad.hcl")
				if err := os.WriteFile(job, data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "case.fleet.hcl")
			src := strings.Replace(basePolicy, `"app.nomad.hcl"`, `"`+filepath.ToSlash(job)+`"`, 1)
			src = strings.Replace(src, `input       = "{\"image\": \"cat.jpg\"}"`, `input       = "{}"`, 1)
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.policySize > 0 {
				sparseFile(t, path, tc.policySize)
			}
			policies, diags := ParseFiles(path)
			if tc.summary == "" {
				if len(diags) != 0 || len(policies) != 1 {
					t.Fatalf("got %d policies, %v", len(policies), diags)
				}
				return
			}
			if policies != nil || len(diags) != 1 {
				t.Fatalf("got %d policies, %d diagnostics: %v", len(policies), len(diags), diags)
			}
			d := diags[0]
			if d.Severity != hcl2.DiagError || d.Summary != tc.summary {
				t.Errorf("got %s %q, want error %q", severityName(d.Severity), d.Summary, tc.summary)
			}
			switch {
			case tc.line == 0 && d.Subject != nil:
				t.Errorf("range %v, want none", d.Subject)
			case tc.line != 0 && (d.Subject == nil || d.Subject.Start.Line != tc.line || d.Subject.Filename != path):
				t.Errorf("range %v, want %s line %d", d.Subject, path, tc.line)
			}
			for _, want := range tc.details {
				if !strings.Contains(d.Detail, want) {
					t.Errorf("detail does not say %q: %s", want, d.Detail)
				}
			}
		})
	}
}

// TestPolicyFromPipe checks that a policy can still be read from a pipe
// (validate <(generate)), within the same limit.
func TestPolicyFromPipe(t *testing.T) {
	if _, err := os.Stat("/dev/fd/0"); err != nil {
		t.Skip("no /dev/fd on this system")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	go func() {
		_, _ = w.Write([]byte(strings.Repeat("# padding\n", MaxPolicyFileSize/10+1)))
		w.Close()
	}()
	_, diags := NewParser().ParseFile("/dev/fd/" + strconv.Itoa(int(r.Fd())))
	if len(diags) != 1 || diags[0].Summary != "Policy file too large" || !strings.Contains(diags[0].Detail, "more than 1 MiB") {
		t.Fatalf("got %v", diags)
	}
}

// TestProbeAttributesDecoded checks that the probe attributes and the
// offline-after-switch budget reach the scheduler's policy.
func TestProbeAttributesDecoded(t *testing.T) {
	src := strings.Replace(applyEdits(t, functional(`probe   = "exec"`, `command = "infer-selftest"`, `args    = ["--model", "yolo"]`)),
		"    max_failure_percent              = 2\n", "    max_failure_percent              = 2\n    max_offline_after_switch_percent = 7.5\n", 1)
	policies, diags := ParseSource(caseFile, []byte(src))
	if diags.HasErrors() || len(policies) != 1 {
		t.Fatalf("%v", diags)
	}
	f := policies[0].Health.Functional
	if f.Probe != "exec" || f.Command != "infer-selftest" || !slices.Equal(f.Args, []string{"--model", "yolo"}) || f.Expect != nil {
		t.Errorf("functional %+v", f)
	}
	if got := policies[0].Rollback.MaxOfflineAfterSwitchPercent; got != 7.5 {
		t.Errorf("max_offline_after_switch_percent %v, want 7.5", got)
	}

	// Without it, the failure budget applies (invariant I6).
	policies, diags = ParseSource(caseFile, []byte(basePolicy))
	if diags.HasErrors() || len(policies) != 1 {
		t.Fatalf("%v", diags)
	}
	if r := policies[0].Rollback; r.MaxOfflineAfterSwitchPercent != r.MaxFailurePercent || r.MaxFailurePercent != 2 {
		t.Errorf("rollback %+v: the offline-after-switch budget should default to max_failure_percent", r)
	}
	if f := policies[0].Health.Functional; f.Command != "" || f.Args != nil {
		t.Errorf("http-json functional %+v carries exec fields", f)
	}
}

// TestProbeTables checks that the probe rules follow the plugin registry:
// every built-in probe is described for the messages, takes probe and
// interval, and every attribute mapped to a plugin attribute exists in the
// functional block and in some probe's schema.
func TestProbeTables(t *testing.T) {
	names := plugin.ProbeNames()
	if len(names) < 3 || !slices.Contains(names, "exec") || !slices.Contains(names, httpJSONProbe) {
		t.Fatalf("plugin.ProbeNames() = %v", names)
	}
	for _, name := range names {
		if probeDoes[name] == "" {
			t.Errorf("probeDoes has no entry for the %s probe", name)
		}
		accepted, required := probeAttrs(name)
		for _, a := range []string{"probe", "interval"} {
			if !slices.Contains(accepted, a) {
				t.Errorf("the %s probe does not take %s", name, a)
			}
		}
		for _, r := range required {
			if !slices.Contains(accepted, r) || requiredWhy["functional."+r] == "" {
				t.Errorf("the %s probe requires %s, which it does not take or no message explains", name, r)
			}
		}
	}
	if _, required := probeAttrs("exec"); !slices.Equal(required, []string{"command"}) {
		t.Errorf("exec requires %v, want [command]", required)
	}
	if _, required := probeAttrs(httpJSONProbe); !slices.Equal(required, []string{"expect"}) {
		t.Errorf("http-json requires %v, want [expect]", required)
	}
	for attr := range probeAttrOf {
		if !functionalSpec.hasAttr(attr) {
			t.Errorf("probeAttrOf: %q is not an attribute of the functional block", attr)
		}
		if len(probesUsing(attr)) == 0 {
			t.Errorf("probeAttrOf: no probe takes %q", attr)
		}
	}
	for _, n := range []string{"infer-selftest", "a", "x.y_z-1", strings.Repeat("c", plugin.MaxExecCommandNameLen)} {
		if !plugin.ValidExecCommandName(n) {
			t.Errorf("ValidExecCommandName(%q) = false", n)
		}
	}
	for _, n := range []string{"", ".", "..", "/bin/sh", "a b", "a;b", "../x", strings.Repeat("c", plugin.MaxExecCommandNameLen+1)} {
		if plugin.ValidExecCommandName(n) {
			t.Errorf("ValidExecCommandName(%q) = true", n)
		}
	}
}
