package hcl

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
)

// checkInvariants asserts what every policy decoded without errors must
// satisfy: the field's rules hold, defaults are in place.
func checkInvariants(t testing.TB, p *scheduler.Policy) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("policy %q: "+format, append([]any{p.Name}, args...)...)
	}
	if p.Name == "" {
		fail("empty name")
	}
	if !slicesContains(scheduler.Strategies, p.Strategy) {
		fail("strategy %q", p.Strategy)
	}
	if p.MaxParallel < 1 || p.MaxParallel > maxMaxParallel {
		fail("max_parallel %d", p.MaxParallel)
	}
	if p.Canary.Percent < 1 || p.Canary.Percent > 5 {
		fail("canary percent %v", p.Canary.Percent)
	}
	if p.Canary.MinPerClass < 1 {
		fail("min_per_class %d", p.Canary.MinPerClass)
	}
	if p.Canary.Soak <= 0 {
		fail("canary soak %v", p.Canary.Soak)
	}
	if p.Canary.Approval != scheduler.ApprovalManual && p.Canary.Approval != scheduler.ApprovalAuto {
		fail("approval %q", p.Canary.Approval)
	}
	if len(p.Waves) == 0 {
		fail("no waves")
	}
	prev := p.Canary.Percent
	for i, w := range p.Waves {
		if w.Percent <= prev || w.Percent > 100 {
			fail("wave %d percent %v after %v", i+1, w.Percent, prev)
		}
		if w.Soak <= 0 {
			fail("wave %d soak %v", i+1, w.Soak)
		}
		prev = w.Percent
	}
	if len(p.Waves) > 0 {
		last := p.Waves[len(p.Waves)-1].Percent
		if (p.Strategy == scheduler.StrategyAB) == (last == 100) {
			fail("strategy %s ends at %v", p.Strategy, last)
		}
	}
	if !filepath.IsAbs(p.Release.Jobspec) {
		fail("jobspec %q is not absolute", p.Release.Jobspec)
	}
	if p.Release.Version == "" || p.Fleet.Selector == "" {
		fail("empty version or selector")
	}
	a := p.Health.Application
	if a.Port == "" || !strings.HasPrefix(a.Path, "/") || a.Interval <= 0 || a.Timeout <= 0 || a.MaxRestarts < 0 {
		fail("application %+v", a)
	}
	if p.Health.Grace < 0 || p.Health.Connectivity.HeartbeatTimeout <= 0 {
		fail("health %+v", p.Health)
	}
	if f := p.Health.Functional; f != nil {
		// A known probe, configured with what it needs and nothing it
		// does not use.
		http, exec := f.Probe == httpJSONProbe, f.Probe == "exec"
		if !slicesContains(plugin.ProbeNames(), f.Probe) || f.Interval <= 0 ||
			http != (len(f.Expect) > 0) || (!http && (f.Path != "" || f.Input != "" || f.MaxLatency != 0)) ||
			exec != plugin.ValidExecCommandName(f.Command) || (!exec && (f.Command != "" || f.Args != nil)) {
			fail("functional %+v", f)
		}
	}
	r := p.Rollback
	if r.MaxFailurePercent < 0 || r.MaxFailurePercent > 100 || r.MaxErrorRate < 0 || r.MaxErrorRate > 1 ||
		r.MaxOfflineAfterSwitchPercent < 0 || r.MaxOfflineAfterSwitchPercent > 100 ||
		(r.Scope != scheduler.ScopeWave && r.Scope != scheduler.ScopeFleet) {
		fail("rollback %+v", r)
	}
	if p.DefRange.Filename == "" || p.Canary.Range.Filename == "" {
		fail("ranges not kept")
	}
}

func slicesContains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestDefaults checks that a policy with only the required parts gets the
// documented defaults.
func TestDefaults(t *testing.T) {
	src := `rollout "app" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }
  release {
    jobspec = "app.nomad.hcl"
    version = "1.0.0"
  }
  canary {
    percent = 2
    soak    = "10m"
  }
  wave {
    percent = 100
    soak    = "10m"
  }
  health {
    application {}
  }
  rollback {
    max_failure_percent = 5
  }
}
`
	policies, diags := ParseSource(caseFile, []byte(src))
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(policies) != 1 {
		t.Fatalf("got %d policies", len(policies))
	}
	p := policies[0]
	abs, _ := filepath.Abs("testdata/app.nomad.hcl")
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", p.Name, "app"},
		{"file", p.File, caseFile},
		{"strategy", p.Strategy, scheduler.StrategyCanaryRolling},
		{"max_parallel", p.MaxParallel, scheduler.DefaultMaxParallel},
		{"jobspec", p.Release.Jobspec, abs},
		{"min_per_class", p.Canary.MinPerClass, scheduler.DefaultMinPerClass},
		{"approval", p.Canary.Approval, scheduler.ApprovalManual},
		{"canary percent", p.Canary.Percent, 2.0},
		{"canary soak", p.Canary.Soak, 10 * time.Minute},
		{"waves", len(p.Waves), 1},
		{"grace", p.Health.Grace, scheduler.DefaultGrace},
		{"heartbeat", p.Health.Connectivity.HeartbeatTimeout, 30 * time.Second},
		{"system", p.Health.System == nil, true},
		{"functional", p.Health.Functional == nil, true},
		{"port", p.Health.Application.Port, "http"},
		{"path", p.Health.Application.Path, "/health"},
		{"interval", p.Health.Application.Interval, 5 * time.Second},
		{"timeout", p.Health.Application.Timeout, 2 * time.Second},
		{"expect_version", p.Health.Application.ExpectVersion, true},
		{"max_restarts", p.Health.Application.MaxRestarts, scheduler.DefaultMaxRestarts},
		{"max_failure_percent", p.Rollback.MaxFailurePercent, 5.0},
		{"scope", p.Rollback.Scope, scheduler.ScopeWave},
		{"catch_up", p.Offline.CatchUp, true},
		{"max_offline_percent", p.Offline.MaxOfflinePercent, 0.0},
		{"def range line", p.DefRange.Start.Line, 1},
		{"canary range line", p.Canary.Range.Start.Line, 9},
		{"canary percent range line", p.Canary.PercentRange.Start.Line, 10},
		{"wave range line", p.Waves[0].Range.Start.Line, 13},
		{"strategy range (default)", p.StrategyRange, p.DefRange},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// TestDecodeFullPolicy checks the values decoded from the base policy.
func TestDecodeFullPolicy(t *testing.T) {
	policies, diags := ParseSource(caseFile, []byte(strings.Replace(basePolicy,
		`input       = "{\"image\": \"cat.jpg\"}"`, `input_file  = "cat.json"`, 1)))
	if len(diags) > 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	p := policies[0]
	catJSON, _ := filepath.Abs("testdata/cat.json")
	want := struct {
		env, variantEnv map[string]string
		dcs             []string
		waves           []float64
		system          scheduler.SystemHealth
		input, file     string
		expect          map[string]string
		latency         time.Duration
		rollback        [3]float64
	}{
		env:        map[string]string{"LOG_LEVEL": "info"},
		variantEnv: map[string]string{"MODEL": "yolo-trt-fp16"},
		dcs:        []string{"dc1"},
		waves:      []float64{10, 100},
		system:     scheduler.SystemHealth{MaxCPUPercent: 90, MaxMemoryPercent: 90, MaxDiskPercent: 95, MaxTemperatureC: 85},
		input:      "{\"image\": \"cat.jpg\"}\n",
		file:       catJSON,
		expect:     map[string]string{"label": "cat"},
		latency:    250 * time.Millisecond,
		rollback:   [3]float64{2, 0.02, 20},
	}
	if !reflect.DeepEqual(p.Release.Env, want.env) || !reflect.DeepEqual(p.Release.Variants["jetson"].Env, want.variantEnv) {
		t.Errorf("env %v, variants %v", p.Release.Env, p.Release.Variants)
	}
	if p.Release.Variants["jetson"].Class != "jetson" {
		t.Errorf("variant class %q", p.Release.Variants["jetson"].Class)
	}
	if !reflect.DeepEqual(p.Fleet.Datacenters, want.dcs) {
		t.Errorf("datacenters %v", p.Fleet.Datacenters)
	}
	var waves []float64
	for _, w := range p.Waves {
		waves = append(waves, w.Percent)
	}
	if !reflect.DeepEqual(waves, want.waves) {
		t.Errorf("waves %v", waves)
	}
	sys := *p.Health.System
	sys.Range = hcl2.Range{}
	if sys != want.system {
		t.Errorf("system %+v", sys)
	}
	f := p.Health.Functional
	if f.Input != want.input || f.InputFile != want.file || !reflect.DeepEqual(f.Expect, want.expect) || f.MaxLatency != want.latency || f.Probe != "http-json" || f.Path != "/infer" {
		t.Errorf("functional %+v", f)
	}
	r := p.Rollback
	if got := [3]float64{r.MaxFailurePercent, r.MaxErrorRate, r.MaxP95LatencyIncreasePercent}; got != want.rollback {
		t.Errorf("rollback %v", got)
	}
	if p.Offline.MaxOfflinePercent != 20 || !p.Offline.CatchUp {
		t.Errorf("offline %+v", p.Offline)
	}
	if p.MaxParallel != 25 || p.MaxParallelRange.Start.Line != 22 {
		t.Errorf("max_parallel %d at %v", p.MaxParallel, p.MaxParallelRange)
	}
}

// TestParseFilesDuplicateAcrossFiles checks that a rollout label used in two
// files is reported in the second file, naming the first.
func TestParseFilesDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	job, _ := filepath.Abs("testdata/app.nomad.hcl")
	src := strings.Replace(basePolicy, `"app.nomad.hcl"`, `"`+filepath.ToSlash(job)+`"`, 1)
	a, b := filepath.Join(dir, "a.fleet.hcl"), filepath.Join(dir, "b.fleet.hcl")
	for _, f := range []string{a, b} {
		if err := os.WriteFile(f, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	policies, diags := ParseFiles(a, b)
	if policies != nil {
		t.Errorf("got policies despite errors")
	}
	if len(diags) != 1 {
		t.Fatalf("diagnostics: %v", diags)
	}
	d := diags[0]
	if d.Severity != hcl2.DiagError || d.Summary != "Duplicate rollout" || d.Subject.Filename != b || d.Subject.Start.Line != 1 ||
		!strings.Contains(d.Detail, a+":1") {
		t.Errorf("got %s at %v: %s", d.Summary, d.Subject, d.Detail)
	}

	// The same file given twice is read once.
	policies, diags = ParseFiles(a, a)
	if len(diags) != 0 || len(policies) != 1 {
		t.Errorf("same file twice: %d policies, %v", len(policies), diags)
	}
}

func TestParseFilesUnreadable(t *testing.T) {
	policies, diags := ParseFiles("testdata/does-not-exist.fleet.hcl")
	if policies != nil || len(diags) != 1 || diags[0].Summary != "Cannot read policy file" || diags[0].Subject != nil {
		t.Fatalf("got %v, %v", policies, diags)
	}
}

// TestParserKeepsWarnings checks that warnings alone do not withhold the
// policies.
func TestParserKeepsWarnings(t *testing.T) {
	p := NewParser()
	src := strings.Replace(basePolicy, `approval      = "manual"`, `approval      = "auto"`, 1)
	policies, diags := p.ParseSource(caseFile, []byte(src))
	if len(policies) != 1 || len(diags) != 1 || diags[0].Severity != hcl2.DiagWarning {
		t.Fatalf("got %d policies, %v", len(policies), diags)
	}
	if policies[0].Canary.Approval != scheduler.ApprovalAuto {
		t.Errorf("approval %q", policies[0].Canary.Approval)
	}
	if p.Files()[caseFile] == nil {
		t.Error("parser did not keep the file for snippets")
	}
}

// TestExamples checks that every policy in examples/ validates without
// errors, and that those meant for production draw no warning either.
func TestExamples(t *testing.T) {
	paths, err := filepath.Glob("../examples/*.fleet.hcl")
	if err != nil || len(paths) < 2 {
		t.Fatalf("examples: %v, %v", paths, err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			policies, diags := ParseFiles(path)
			for _, d := range diags {
				t.Logf("%s: %s: %s", d.Subject, d.Summary, d.Detail)
			}
			if diags.HasErrors() {
				t.Fatal("example has errors")
			}
			if len(policies) == 0 {
				t.Fatal("example has no rollout")
			}
			for _, p := range policies {
				checkInvariants(t, p)
			}
			if filepath.Base(path) == "detector.fleet.hcl" && len(diags) > 0 {
				t.Error("the documented example should draw no warning")
			}
		})
	}
	// All examples together: no label is used twice.
	if _, diags := ParseFiles(paths...); diags.HasErrors() {
		t.Errorf("examples conflict: %v", diags)
	}
}

// TestEdgeinferExample pins what the demo relies on.
func TestEdgeinferExample(t *testing.T) {
	policies, diags := ParseFiles("../examples/edgeinfer.fleet.hcl")
	if diags.HasErrors() || len(policies) != 1 {
		t.Fatalf("%v", diags)
	}
	p := policies[0]
	job, _ := filepath.Abs("../examples/edgeinfer.nomad.hcl")
	if p.Name != "edgeinfer" || p.Release.Version != "2.0.0" || p.Release.Jobspec != job ||
		p.Strategy != scheduler.StrategyCanaryRolling || p.Canary.Percent != 5 || p.Canary.MinPerClass != 1 ||
		p.Canary.Soak != 20*time.Second || p.Canary.Approval != scheduler.ApprovalManual {
		t.Errorf("policy %+v", p)
	}
	if len(p.Waves) != 2 || p.Waves[0].Percent != 50 || p.Waves[1].Percent != 100 || p.Waves[0].Soak != 15*time.Second {
		t.Errorf("waves %+v", p.Waves)
	}
	f := p.Health.Functional
	if p.Health.Application.Port != "http" || p.Health.Application.Path != "/health" || f == nil ||
		f.Path != "/infer" || f.Input != `{"image":"cat.jpg"}` || f.Expect["label"] != "cat" {
		t.Errorf("health %+v %+v", p.Health.Application, f)
	}
}

func TestExpandPaths(t *testing.T) {
	paths, diags := ExpandPaths([]string{"../examples", "x.fleet.hcl"})
	if len(diags) != 0 {
		t.Fatal(diags)
	}
	want := []string{filepath.Join("..", "examples", "detector.fleet.hcl"), filepath.Join("..", "examples", "edgeinfer.fleet.hcl"), "x.fleet.hcl"}
	if !reflect.DeepEqual(paths, want) {
		t.Errorf("got %v, want %v", paths, want)
	}
	if _, diags := ExpandPaths([]string{t.TempDir()}); len(diags) != 1 || diags[0].Summary != "No policy files" {
		t.Errorf("empty folder: %v", diags)
	}
}

func TestSuggest(t *testing.T) {
	cases := []struct {
		given string
		cands []string
		want  string
	}{
		{"max_paralel", []string{"strategy", "max_parallel"}, "max_parallel"},
		{"maxParallel", []string{"strategy", "max_parallel"}, "max_parallel"},
		{"percentage", []string{"percent", "soak"}, "percent"},
		{"canary_rolling", strategies(), "canary-rolling"},
		{"bluegreen", strategies(), "blue-green"},
		{"xyz", []string{"percent", "soak"}, ""},
		{"", []string{"percent"}, ""},
	}
	for _, c := range cases {
		if got := suggest(c.given, c.cands); got != c.want {
			t.Errorf("suggest(%q) = %q, want %q", c.given, got, c.want)
		}
	}
}
