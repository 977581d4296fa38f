package jobs

import (
	"slices"
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
