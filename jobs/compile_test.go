package jobs

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// edgeinferJob is examples/edgeinfer.nomad.hcl as the Nomad server parses it
// (without canonicalization, which the golden files do not need).
func edgeinferJob() *api.Job {
	return &api.Job{
		ID:          new("edgeinfer"),
		Name:        new("edgeinfer"),
		Type:        new("system"),
		Datacenters: []string{"dc1"},
		TaskGroups: []*api.TaskGroup{{
			Name:     new("edgeinfer"),
			Networks: []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: "http"}}}},
			Services: []*api.Service{{
				Name: "edgeinfer", PortLabel: "http", Provider: "consul", Address: "${NOMAD_IP_http}",
			}},
			RestartPolicy: &api.RestartPolicy{
				Attempts: new(2), Interval: new(time.Minute), Delay: new(2 * time.Second), Mode: new("delay"),
			},
			Tasks: []*api.Task{{
				Name:   "edgeinfer",
				Driver: "raw_exec",
				Config: map[string]any{
					"command": "${meta.edge.bin_dir}/edgeinfer",
					"args":    []any{"-addr", "${NOMAD_IP_http}:${NOMAD_PORT_http}"},
				},
				Env:       map[string]string{"EDGEINFER_NODE": "${node.unique.name}"},
				Resources: &api.Resources{CPU: new(50), MemoryMB: new(32)},
			}},
		}},
	}
}

// edgeinferPolicy is examples/edgeinfer.fleet.hcl as the decoder returns it
// (the parts Compile reads).
func edgeinferPolicy() *scheduler.Policy {
	return &scheduler.Policy{
		Name: "edgeinfer",
		Fleet: scheduler.Fleet{
			Selector:    `Meta.fleet == "vision"`,
			Datacenters: []string{"dc1"},
		},
		Release: scheduler.Release{
			Jobspec: "edgeinfer.nomad.hcl",
			Version: "2.0.0",
			Env:     map[string]string{"LOG_LEVEL": "info"},
			Variants: map[string]scheduler.Variant{
				"jetson": {Class: "jetson", Env: map[string]string{"MODEL": "edgeinfer-trt-fp16"}},
			},
		},
		Health: scheduler.Health{Application: scheduler.Application{
			Port: "http", Path: "/health", Interval: 2 * time.Second, Timeout: time.Second,
		}},
	}
}

// noServiceJob is a service-type jobspec without a service, with what a
// system job does not accept (count, reschedule, migrate, affinity, spread).
func noServiceJob() *api.Job {
	return &api.Job{
		ID:          new("sensor"),
		Type:        new("service"),
		Datacenters: []string{"edge-east", "edge-west"},
		Constraints: []*api.Constraint{api.NewConstraint("${attr.kernel.name}", "=", "linux")},
		Affinities:  []*api.Affinity{{LTarget: "${node.class}", Operand: "=", RTarget: "rpi", Weight: new(int8(50))}},
		Meta:        map[string]string{"team": "sensing"},
		TaskGroups: []*api.TaskGroup{{
			Name:             new("sensor"),
			Count:            new(3),
			Networks:         []*api.NetworkResource{{ReservedPorts: []api.Port{{Label: "api", Value: 9100}}}},
			ReschedulePolicy: &api.ReschedulePolicy{Attempts: new(3)},
			Migrate:          &api.MigrateStrategy{MaxParallel: new(1)},
			Spreads:          []*api.Spread{{Attribute: "${node.datacenter}"}},
			Tasks: []*api.Task{{
				Name:   "sensor",
				Driver: "exec",
				Config: map[string]any{"command": "/usr/local/bin/sensor"},
				Env:    map[string]string{"LOG_LEVEL": "debug", "SAMPLE_HZ": "10"},
			}},
		}},
	}
}

// multiServiceJob has two groups, several services (the health port's is
// not the first), a task-level service and stale fleetplan tags.
func multiServiceJob() *api.Job {
	return &api.Job{
		ID:   new("camera"),
		Type: new("system"),
		TaskGroups: []*api.TaskGroup{
			{
				Name: new("camera"),
				Networks: []*api.NetworkResource{{DynamicPorts: []api.Port{
					{Label: "metrics"}, {Label: "http"},
				}}},
				Services: []*api.Service{
					{Name: "camera-metrics", PortLabel: "metrics", Tags: []string{"prometheus"}},
					{
						Name: "camera", PortLabel: "http", Tags: []string{"fleetplan-slot=green", "web"},
						Meta:   map[string]string{"owner": "vision"},
						Checks: []api.ServiceCheck{{Name: "tcp alive", Type: "tcp", Interval: 10 * time.Second, Timeout: 2 * time.Second}},
					},
				},
				Tasks: []*api.Task{{
					Name:     "camera",
					Driver:   "raw_exec",
					Config:   map[string]any{"command": "camera"},
					Services: []*api.Service{{Name: "camera-admin", PortLabel: "http", Provider: "nomad"}},
				}},
			},
			{
				// A group without the health port gets tags, no check.
				Name:     new("uploader"),
				Tasks:    []*api.Task{{Name: "uploader", Driver: "raw_exec", Config: map[string]any{"command": "uploader"}}},
				Services: []*api.Service{{Name: "uploader"}},
			},
		},
	}
}

func TestCompileGolden(t *testing.T) {
	cases := []struct {
		name      string
		base      *api.Job
		policy    func(p *scheduler.Policy)
		slot, rid string
	}{
		{name: "edgeinfer-blue", base: edgeinferJob(), slot: "blue", rid: "r-20260101-0001"},
		{
			name: "edgeinfer-green-variants", base: edgeinferJob(), slot: "green", rid: "r-20260102-0002",
			policy: func(p *scheduler.Policy) {
				p.Fleet.Selector = `Meta["hw.accelerator"] == "cuda" and NodeClass == "jetson" and Datacenter == "dc1" and Meta.fleet != "lab"`
				p.Release.Version = "2.1.0"
				p.Release.Variants["rpi"] = scheduler.Variant{Class: "rpi", Env: map[string]string{"MODEL": "edgeinfer-tflite", "LOG_LEVEL": "warn"}}
			},
		},
		{
			name: "noservice", base: noServiceJob(), slot: "blue", rid: "r-3",
			policy: func(p *scheduler.Policy) {
				p.Name = "sensor"
				p.Fleet.Selector = `Meta.fleet == "vision" or NodeClass == "rpi"`
				p.Fleet.Datacenters = nil
				p.Release.Variants = nil
				p.Health.Application.Port = "api"
				p.Health.Application.Path = "/status"
			},
		},
		{
			name: "multiservice", base: multiServiceJob(), slot: "green", rid: "r-4",
			policy: func(p *scheduler.Policy) {
				p.Name = "camera"
				p.Fleet.Selector = ""
				p.Release.Env = nil
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := edgeinferPolicy()
			if c.policy != nil {
				c.policy(p)
			}
			before := mustJSON(t, c.base)
			job, err := Compile(c.base, p, c.slot, c.rid)
			if err != nil {
				t.Fatal(err)
			}
			if after := mustJSON(t, c.base); !bytes.Equal(before, after) {
				t.Error("Compile modified its base job")
			}
			assertGolden(t, filepath.Join("testdata", c.name+".golden.json"), goldenJSON(t, job))
			assertOneGroupPerClass(t, job, c.base, p)
		})
	}
}

// assertOneGroupPerClass checks that on a device of any class exactly one
// copy of every jobspec group is placed.
func assertOneGroupPerClass(t *testing.T, job, base *api.Job, p *scheduler.Policy) {
	t.Helper()
	for _, class := range []string{"jetson", "rpi", "gateway", "", "unknown"} {
		count := map[string]int{}
		for _, g := range job.TaskGroups {
			if classMatches(g.Constraints, class) {
				count[originalGroup(*g.Name, p)]++
			}
		}
		for _, g := range base.TaskGroups {
			if count[*g.Name] != 1 {
				t.Errorf("class %q: group %q placed %d times, want 1", class, *g.Name, count[*g.Name])
			}
		}
	}
}

func classMatches(cs []*api.Constraint, class string) bool {
	for _, c := range cs {
		if c.LTarget != "${node.class}" {
			continue
		}
		if c.Operand == "=" && c.RTarget != class || c.Operand == "!=" && c.RTarget == class {
			return false
		}
	}
	return true
}

func originalGroup(name string, p *scheduler.Policy) string {
	for class := range p.Release.Variants {
		if s, ok := strings.CutSuffix(name, "-"+class); ok {
			return s
		}
	}
	return name
}

func TestCompileContents(t *testing.T) {
	job, err := Compile(edgeinferJob(), edgeinferPolicy(), "green", "r-9")
	if err != nil {
		t.Fatal(err)
	}
	if got := *job.ID + " " + *job.Name + " " + *job.Type; got != "edgeinfer-green edgeinfer-green system" {
		t.Errorf("id name type = %q", got)
	}
	if c := job.Constraints[0]; *c != (api.Constraint{LTarget: "${meta.fleetplan.edgeinfer.slot}", Operand: "set_contains", RTarget: "green"}) {
		t.Errorf("slot constraint = %+v", *c)
	}
	// I4: the version exactly as released, the run in its own key.
	if got := job.Meta[contract.MetaVersion]; got != "2.0.0" {
		t.Errorf("fleetplan_version = %q, want exactly the policy's version", got)
	}
	if got := job.Meta[contract.MetaRollout]; got != "r-9" {
		t.Errorf("fleetplan_rollout = %q", got)
	}
	for _, g := range job.TaskGroups {
		for _, s := range g.Services {
			if s.Meta[contract.MetaVersion] != "2.0.0" || s.Meta[contract.MetaRollout] != "r-9" {
				t.Errorf("service %s meta = %v", s.Name, s.Meta)
			}
		}
	}
	if n := len(job.TaskGroups); n != 2 {
		t.Fatalf("%d groups, want the group and its jetson variant", n)
	}
	jetson := job.TaskGroups[1]
	if *jetson.Name != "edgeinfer-jetson" || jetson.Tasks[0].Env["MODEL"] != "edgeinfer-trt-fp16" || jetson.Tasks[0].Env["LOG_LEVEL"] != "info" {
		t.Errorf("jetson variant: %s env %v", *jetson.Name, jetson.Tasks[0].Env)
	}
	if _, ok := job.TaskGroups[0].Tasks[0].Env["MODEL"]; ok {
		t.Error("the variant's env leaked into the default group")
	}
	for _, g := range job.TaskGroups {
		s := g.Services[0]
		if len(s.Checks) != 1 || s.Checks[0].Name != contract.CheckApplication || s.Checks[0].Path != "/health" || s.Checks[0].PortLabel != "http" ||
			s.Checks[0].Interval != 2*time.Second || s.Checks[0].Timeout != time.Second {
			t.Errorf("group %s checks: %+v", *g.Name, s.Checks)
		}
		if *g.RestartPolicy.Attempts != 2 || *g.RestartPolicy.Mode != "delay" {
			t.Errorf("group %s restart policy changed: %+v", *g.Name, g.RestartPolicy)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		name   string
		base   func(j *api.Job)
		policy func(p *scheduler.Policy)
		slot   string
		want   string
	}{
		{name: "no group", base: func(j *api.Job) { j.TaskGroups = nil }, want: `compiling edgeinfer-blue from job "edgeinfer": the job has no task group`},
		{name: "port missing", policy: func(p *scheduler.Policy) { p.Health.Application.Port = "grpc" }, want: `no group's network declares the health port "grpc" (ports: http)`},
		{name: "no network", base: func(j *api.Job) { j.TaskGroups[0].Networks = nil }, want: `no group's network declares the health port "http" (ports: none)`},
		{name: "bad slot", slot: "red", want: `slot "red" is neither "blue" nor "green"`},
		{name: "no version", policy: func(p *scheduler.Policy) { p.Release.Version = "" }, want: "the release has no version"},
		{name: "plus in version", policy: func(p *scheduler.Policy) { p.Release.Version = "2.0.0+build.7" }, want: `release version "2.0.0+build.7" contains "+"`},
		{name: "periodic", base: func(j *api.Job) { j.Periodic = &api.PeriodicConfig{Spec: new("@daily")} }, want: "periodic and parameterized jobs cannot run as system jobs"},
		{
			name: "variant name taken",
			base: func(j *api.Job) {
				g := *j.TaskGroups[0]
				g.Name = new("edgeinfer-jetson")
				j.TaskGroups = append(j.TaskGroups, &g)
			},
			want: `the variant of group "edgeinfer" for class "jetson" would be named "edgeinfer-jetson", which the job already uses`,
		},
		{name: "check timeout", policy: func(p *scheduler.Policy) { p.Health.Application.Timeout = 500 * time.Millisecond }, want: "interval (2s) and timeout (500ms) must be at least 1s, Nomad's minimum"},
		{name: "no name", policy: func(p *scheduler.Policy) { p.Name = "" }, want: "the policy has no rollout name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base, p, slot := edgeinferJob(), edgeinferPolicy(), "blue"
			if c.base != nil {
				c.base(base)
			}
			if c.policy != nil {
				c.policy(p)
			}
			if c.slot != "" {
				slot = c.slot
			}
			_, err := Compile(base, p, slot, "r-1")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestSelectorConstraints(t *testing.T) {
	c := func(l, o, r string) string { return l + " " + o + " " + r }
	cases := []struct {
		selector string
		want     []string
	}{
		{``, nil},
		{`Meta.fleet == "vision"`, []string{c("${meta.fleet}", "=", "vision")}},
		{`Meta["hw.model"] == "raspberry-pi-5"`, []string{c("${meta.hw.model}", "=", "raspberry-pi-5")}},
		{"NodeClass == `jetson` and Datacenter == \"dc1\"", []string{c("${node.class}", "=", "jetson"), c("${node.datacenter}", "=", "dc1")}},
		{`Meta.fleet == "vision" and Name matches "^cam"`, []string{c("${meta.fleet}", "=", "vision")}},
		{`Meta.fleet == "vision" and "gpu" in Meta.tags`, []string{c("${meta.fleet}", "=", "vision")}},
		{`Meta.fleet == "a\"b"`, []string{c("${meta.fleet}", "=", `a"b`)}},
		{`Meta.fleet == "vision and more"`, []string{c("${meta.fleet}", "=", "vision and more")}},
		{`Meta.fleet == "vision" or NodeClass == "rpi"`, nil},
		{`not (NodeClass == "rpi")`, nil},
		{`(Meta.fleet == "vision") and NodeClass == "rpi"`, nil},
		{`NodeClass != "rpi"`, nil},
		{`Meta.fleet == "unterminated`, nil},
		{`Meta.fleet == "vision" && NodeClass == "rpi"`, nil},
	}
	for _, tc := range cases {
		var got []string
		for _, k := range selectorConstraints(tc.selector) {
			got = append(got, c(k.LTarget, k.Operand, k.RTarget))
		}
		if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
			t.Errorf("selectorConstraints(%s) = %q, want %q", tc.selector, got, tc.want)
		}
	}
}

func TestSlotsLeaving(t *testing.T) {
	cases := []struct{ from, to, want string }{
		{"", "blue", ""},
		{"blue", "green", "blue"},
		{"blue", "blue,green", ""},
		{"blue,green", "green", "blue"},
		{"blue,green", "", "blue,green"},
		{"green", "", "green"},
		{"blue", "blue", ""},
	}
	for _, c := range cases {
		if got := strings.Join(slotsLeaving(c.from, c.to), ","); got != c.want {
			t.Errorf("slotsLeaving(%q, %q) = %q, want %q", c.from, c.to, got, c.want)
		}
	}
	for _, v := range []string{"", "blue", "green", "blue,green"} {
		if err := validSlotValue(v); err != nil {
			t.Errorf("validSlotValue(%q): %v", v, err)
		}
	}
	for _, v := range []string{"red", "blue,", "blue, green"} {
		if err := validSlotValue(v); err == nil {
			t.Errorf("validSlotValue(%q) accepted", v)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	base, p := edgeinferJob(), edgeinferPolicy()
	p.Release.Variants["rpi"] = scheduler.Variant{Class: "rpi", Env: map[string]string{"MODEL": "tflite"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(base, p, "blue", "r-1"); err != nil {
			b.Fatal(err)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// goldenJSON is the job as indented JSON without its null fields (the API
// treats them as absent), so that a golden file shows what the job sets.
func goldenJSON(t *testing.T, job *api.Job) []byte {
	t.Helper()
	var v any
	if err := json.Unmarshal(mustJSON(t, job), &v); err != nil {
		t.Fatal(err)
	}
	return mustJSON(t, dropNulls(v))
}

func dropNulls(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if e == nil {
				delete(v, k)
			} else {
				v[k] = dropNulls(e)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = dropNulls(e)
		}
	}
	return v
}

func assertGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./jobs/ -update` to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("%s differs at line %d:\n  got:  %s\n  want: %s\n(run `go test ./jobs/ -update` if the change is intended)", path, i+1, g, w)
		}
	}
}
