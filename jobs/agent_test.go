package jobs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
)

func TestAgentJob(t *testing.T) {
	job := AgentJob(AgentJobOptions{Selector: `Meta.fleet == "vision" and NodeClass == "rpi"`})
	if *job.ID != "fleetplan-agent" || *job.Name != "fleetplan-agent" || *job.Type != api.JobTypeSystem {
		t.Errorf("job identity = %s %s %s", *job.ID, *job.Name, *job.Type)
	}
	if !slices.Equal(job.Datacenters, []string{"*"}) {
		t.Errorf("datacenters = %v", job.Datacenters)
	}
	wantC := []*api.Constraint{
		api.NewConstraint("${meta.fleet}", "=", "vision"),
		api.NewConstraint("${node.class}", "=", "rpi"),
	}
	if len(job.Constraints) != 2 || *job.Constraints[0] != *wantC[0] || *job.Constraints[1] != *wantC[1] {
		t.Errorf("constraints = %v", job.Constraints)
	}
	if len(job.TaskGroups) != 1 {
		t.Fatalf("groups = %d", len(job.TaskGroups))
	}
	g := job.TaskGroups[0]
	if len(g.Networks) != 1 || len(g.Networks[0].DynamicPorts) != 1 || g.Networks[0].DynamicPorts[0].Label != "probe" {
		t.Errorf("network = %+v", g.Networks)
	}
	task := g.Tasks[0]
	if task.Driver != "raw_exec" || task.Config["command"] != "${meta.edge.bin_dir}/fleetplan" {
		t.Errorf("task = %s %v", task.Driver, task.Config)
	}
	wantArgs := []string{
		"agent",
		"-addr", "${NOMAD_IP_probe}:${NOMAD_PORT_probe}",
		"-node", "${node.unique.name}",
		"-nomad-addr", "http://${attr.nomad.advertise.address}",
	}
	if args := task.Config["args"].([]string); !slices.Equal(args, wantArgs) {
		t.Errorf("args =\n%q\nwant\n%q", args, wantArgs)
	}
	// The node meta may be missing: Nomad would reject it in the args.
	if task.Env["FLEETPLAN_AGENT_CONSUL_ADDR"] != "${meta.consul.http_addr}" {
		t.Errorf("env = %v", task.Env)
	}
	if *task.KillTimeout != 15*time.Second || task.KillSignal != "SIGTERM" {
		t.Errorf("kill = %s %s", *task.KillTimeout, task.KillSignal)
	}

	custom := AgentJob(AgentJobOptions{
		JobID: "agent-test", Datacenters: []string{"dc1"}, ConsulAddr: "127.0.0.1:8500", NomadAddr: "${meta.nomad.http_addr}",
		KVPrefix: "test/apps", ExtraArgs: []string{"-check-interval", "2s"}, Env: map[string]string{"CONSUL_HTTP_TOKEN": "t"},
		Meta: map[string]string{"owner": "test"}, Command: "/opt/fleetplan",
	})
	args := custom.TaskGroups[0].Tasks[0].Config["args"].([]string)
	if *custom.ID != "agent-test" || !slices.Equal(custom.Datacenters, []string{"dc1"}) || custom.Constraints != nil ||
		!slices.Equal(args[5:], []string{"-consul-addr", "127.0.0.1:8500", "-nomad-addr", "${meta.nomad.http_addr}", "-kv-prefix", "test/apps", "-check-interval", "2s"}) ||
		custom.TaskGroups[0].Tasks[0].Env["CONSUL_HTTP_TOKEN"] != "t" || custom.TaskGroups[0].Tasks[0].Env["FLEETPLAN_AGENT_CONSUL_ADDR"] != "" || custom.Meta["owner"] != "test" || custom.Meta["fleetplan_component"] != "agent" ||
		custom.TaskGroups[0].Tasks[0].Config["command"] != "/opt/fleetplan" {
		t.Errorf("custom job: args %q, meta %v, env %v", args, custom.Meta, custom.TaskGroups[0].Tasks[0].Env)
	}
}

func TestAgentJobTokensFromVariable(t *testing.T) {
	plain := AgentJob(AgentJobOptions{})
	if n := len(plain.TaskGroups[0].Tasks[0].Templates); n != 0 {
		t.Errorf("without -token-from-variable the job has %d templates, want none", n)
	}
	job := AgentJob(AgentJobOptions{JobID: "agent-x", TokensFromVariable: true})
	task := job.TaskGroups[0].Tasks[0]
	if len(task.Templates) != 1 {
		t.Fatalf("templates = %d, want 1", len(task.Templates))
	}
	tp := task.Templates[0]
	if !*tp.Envvars || *tp.DestPath != "secrets/fleetplan-agent.env" || *tp.ChangeMode != "restart" {
		t.Errorf("template = env %v dest %s change %s", *tp.Envvars, *tp.DestPath, *tp.ChangeMode)
	}
	want := "{{ with nomadVar \"nomad/jobs/agent-x\" }}\nCONSUL_HTTP_TOKEN={{ .consul_token }}\nNOMAD_TOKEN={{ .nomad_token }}\n{{ end }}\n"
	if *tp.EmbeddedTmpl != want {
		t.Errorf("template data =\n%s\nwant\n%s", *tp.EmbeddedTmpl, want)
	}
	for k := range task.Env {
		if strings.Contains(k, "TOKEN") {
			t.Errorf("the task's env names a token (%s): tokens come from the template only", k)
		}
	}
	if AgentVariablePath("") != "nomad/jobs/fleetplan-agent" {
		t.Errorf("default variable path = %s", AgentVariablePath(""))
	}
}

func TestAgentJobArtifact(t *testing.T) {
	url := "https://releases.example.com/fleetplan/1.2.0/fleetplan_linux_${attr.cpu.arch}"
	job := AgentJob(AgentJobOptions{Artifact: &AgentArtifact{URL: url, Checksum: "sha256:" + strings.Repeat("ab", 32)}})
	task := job.TaskGroups[0].Tasks[0]
	if task.Config["command"] != "local/fleetplan" {
		t.Errorf("command = %v, want the fetched local/fleetplan", task.Config["command"])
	}
	if len(task.Artifacts) != 1 {
		t.Fatalf("artifacts = %d, want 1", len(task.Artifacts))
	}
	a := task.Artifacts[0]
	if *a.GetterSource != url || *a.GetterMode != "file" || *a.RelativeDest != "local/fleetplan" {
		t.Errorf("artifact = %s mode %s dest %s", *a.GetterSource, *a.GetterMode, *a.RelativeDest)
	}
	if a.GetterOptions["checksum"] != "sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("checksum option = %q", a.GetterOptions["checksum"])
	}
	noSum := AgentJob(AgentJobOptions{Artifact: &AgentArtifact{URL: url}}).TaskGroups[0].Tasks[0].Artifacts[0]
	if _, ok := noSum.GetterOptions["checksum"]; ok {
		t.Errorf("an artifact without -checksum has options %v", noSum.GetterOptions)
	}
	local := AgentJob(AgentJobOptions{}).TaskGroups[0].Tasks[0]
	if len(local.Artifacts) != 0 || local.Config["command"] != DefaultAgentCommand {
		t.Errorf("default job: artifacts %d command %v, want none and %s", len(local.Artifacts), local.Config["command"], DefaultAgentCommand)
	}
}
