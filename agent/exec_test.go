//go:build unix

package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
)

func TestParseExecAllow(t *testing.T) {
	l, err := ParseExecAllow([]string{"infer-selftest=/opt/edge/selftest", "disk.check=/usr/bin/check,30s"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if l["infer-selftest"] != (ExecEntry{Path: "/opt/edge/selftest", Timeout: DefaultExecTimeout}) ||
		l["disk.check"] != (ExecEntry{Path: "/usr/bin/check", Timeout: 30 * time.Second}) {
		t.Errorf("allow-list = %+v", l)
	}
	if _, err := ParseExecAllow([]string{"x=${meta.edge.bin_dir}/x"}, false); err != nil {
		t.Errorf("install-time entry with an interpolation: %v", err)
	}
	for entry, want := range map[string]string{
		"selftest":             "want NAME=/path",
		"=/bin/true":           "the name",
		"a b=/bin/true":        "the name",
		"x=relative/prog":      "absolute path",
		"x=/bin/true,soon":     "not a positive duration",
		"x=/bin/true,-1s":      "not a positive duration",
		"x=":                   "want NAME=/path",
		"../../bin/sh=/bin/sh": "the name",
	} {
		if _, err := ParseExecAllow([]string{entry}, true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExecAllow(%q) = %v, want an error with %q", entry, err, want)
		}
	}
	if _, err := ParseExecAllow([]string{"x=/a", "x=/b"}, true); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("duplicate name: %v", err)
	}
}

// script writes an executable shell script and returns its path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "probe.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestExecProbeAllowList (I10, defect 13): the exec probe runs the program
// the agent's own allow-list maps the policy's command name to, with the
// policy's args; a name not in the list is a critical check that says how
// to allow it, and nothing runs.
func TestExecProbeAllowList(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	ok := script(t, `echo "selftest $*"; echo "$FLEETPLAN_TARGET_ADDRESS"`)
	warn := script(t, `echo degraded; exit 1`)
	slow := script(t, `sleep 5`)
	allow := ExecAllowList{
		"selftest": {Path: ok, Timeout: 2 * time.Second},
		"warn":     {Path: warn, Timeout: 2 * time.Second},
		"slow":     {Path: slow, Timeout: 300 * time.Millisecond},
	}
	fp := newFunctionalProbes(plugin.NewProbe)
	fp.allow = allow
	inst := Instance{ServiceID: "svc", Service: "edgeinfer", App: "edgeinfer", Address: "127.0.0.1", Port: 8080}
	run := func(f *FunctionalConfig) (plugin.Status, string) {
		return fp.ProbeFunctional(context.Background(), inst, "rpi-1", f)
	}

	st, out := run(&FunctionalConfig{Probe: "exec", Command: "selftest", Args: []string{"--model", "yolo"}})
	if st != Passing || !strings.Contains(out, "selftest --model yolo") || !strings.Contains(out, "127.0.0.1:8080") {
		t.Errorf("allowed command: %s\n%s", st, out)
	}
	if st, out := run(&FunctionalConfig{Probe: "exec", Command: "warn"}); st != Warning || !strings.Contains(out, "degraded") {
		t.Errorf("exit 1: %s\n%s", st, out)
	}
	st, out = run(&FunctionalConfig{Probe: "exec", Command: "slow"})
	if st != Critical || !strings.Contains(out, "timed out after 300ms") {
		t.Errorf("slow command: %s\n%s", st, out)
	}
	// Not in the list: a program named in KV never runs.
	for _, cmd := range []string{"rm", "sh", "/bin/sh", "touch " + marker} {
		st, out := run(&FunctionalConfig{Probe: "exec", Command: cmd, Args: []string{"-c", "touch " + marker}})
		want := "command " + cmd + " is not in this agent's allow-list (set -exec-allow " + cmd + "=/path; it allows selftest, slow, warn)"
		if st != Critical || !strings.Contains(out, want) {
			t.Errorf("command %q: %s\n%s\nwant %q", cmd, st, out, want)
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a command that is not in the allow-list ran")
	}
	empty := newFunctionalProbes(plugin.NewProbe)
	if st, out := empty.ProbeFunctional(context.Background(), inst, "rpi-1", &FunctionalConfig{Probe: "exec", Command: "selftest"}); st != Critical || !strings.Contains(out, "it allows none") {
		t.Errorf("agent without an allow-list: %s\n%s", st, out)
	}
}

// TestExecCheckTimeout: the layer 4 check's Consul timeout follows the
// allow-list entry's.
func TestExecCheckTimeout(t *testing.T) {
	plan := checkPlan{Base: "http://127.0.0.1:7474", Interval: 5 * time.Second, Timeout: 3 * time.Second,
		ExecAllow: ExecAllowList{"selftest": {Path: "/bin/true", Timeout: 30 * time.Second}}}
	inst := Instance{ServiceID: "svc", App: "edgeinfer", Address: "127.0.0.1", Port: 1}
	for cmd, want := range map[string]string{"selftest": "31s", "unknown": "3s"} {
		cfgs := map[string]*AppConfig{"edgeinfer": {App: "edgeinfer", HealthPath: "/health", Functional: &FunctionalConfig{Probe: "exec", Command: cmd}}}
		l4 := plan.DesiredChecks([]Instance{inst}, cfgs)[ServiceCheckID(4, "svc")]
		if l4 == nil || l4.Timeout != want || !strings.Contains(l4.Notes, "running command "+cmd+" of the agent's allow-list") {
			t.Errorf("command %s: L4 check %+v, want timeout %s", cmd, l4, want)
		}
	}
}

// TestAppConfigExec: the policy's exec command name and args reach the
// agents through KV; a command that is not a name is refused.
func TestAppConfigExec(t *testing.T) {
	p := testPolicy()
	p.Health.Functional = &scheduler.Functional{Probe: "exec", Command: "infer-selftest", Args: []string{"--model", "yolo"}}
	c, err := NewAppConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Functional.Command != "infer-selftest" || strings.Join(c.Functional.Args, " ") != "--model yolo" {
		t.Errorf("functional = %+v", c.Functional)
	}
	p.Health.Functional.Command = "/bin/sh -c reboot"
	if _, err := NewAppConfig(p); err == nil || !strings.Contains(err.Error(), "is not a name of an agent allow-list") {
		t.Errorf("command line as command: %v", err)
	}
}
