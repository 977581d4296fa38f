package jobs

import (
	"maps"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
)

// Defaults of the device agent's system job.
const (
	// AgentPortLabel is the network port the agent's probes listen on.
	AgentPortLabel = "probe"
	// DefaultAgentCommand runs the fleetplan binary installed next to the
	// applications (the dev cluster puts it in the node meta edge.bin_dir).
	DefaultAgentCommand = "${meta.edge.bin_dir}/fleetplan"
	// DefaultAgentConsulAddr is the device's own Consul agent, from the
	// node meta consul.http_addr. It reaches the agent through the
	// environment (FLEETPLAN_AGENT_CONSUL_ADDR), not the arguments: Nomad
	// rejects a task config naming a meta key the node lacks, but leaves
	// such an env value as written, and the agent then asks its Nomad
	// client which Consul agent it uses.
	DefaultAgentConsulAddr = "${meta.consul.http_addr}"

	// agentConsulAddrEnv is the environment variable of the agent's
	// -consul-addr flag.
	agentConsulAddrEnv = "FLEETPLAN_AGENT_CONSUL_ADDR"
	// DefaultAgentNomadAddr is the device's own Nomad client, from the
	// address it advertises (always fingerprinted; the node meta
	// nomad.http_addr, "${meta.nomad.http_addr}", says the same where set).
	DefaultAgentNomadAddr = "http://${attr.nomad.advertise.address}"

	// AgentArtifactCommand is the agent's binary once its artifact is
	// fetched: raw_exec runs a relative command from the task directory.
	AgentArtifactCommand = "local/fleetplan"
	// AgentTokensFile is where the tokens template renders (the task's
	// secrets directory, never shown by Nomad's APIs).
	AgentTokensFile = "secrets/fleetplan-agent.env"
	// VariableItemConsulToken and VariableItemNomadToken are the items of
	// the agent's Nomad Variable (AgentVariablePath) the template reads.
	VariableItemConsulToken = "consul_token"
	VariableItemNomadToken  = "nomad_token"
)

// AgentVariablePath is the Nomad Variable the agent job's tasks may read
// with their workload identity (Nomad's implicit policy grants a job's
// tasks nomad/jobs/<job ID>): the device agent's tokens.
func AgentVariablePath(jobID string) string {
	if jobID == "" {
		jobID = contract.AgentJobID
	}
	return "nomad/jobs/" + jobID
}

// AgentTokensTemplate is the template that renders the agent's tokens from
// its Nomad Variable into environment variables (CONSUL_HTTP_TOKEN,
// NOMAD_TOKEN): the tokens are in no job spec, argument or log.
func AgentTokensTemplate(jobID string) string {
	return "{{ with nomadVar \"" + AgentVariablePath(jobID) + "\" }}\n" +
		"CONSUL_HTTP_TOKEN={{ ." + VariableItemConsulToken + " }}\n" +
		"NOMAD_TOKEN={{ ." + VariableItemNomadToken + " }}\n" +
		"{{ end }}\n"
}

// AgentArtifact is where the devices fetch the agent binary (Nomad's
// artifact block, go-getter).
type AgentArtifact struct {
	// URL of the binary; Nomad interpolates node attributes, so
	// ${attr.cpu.arch} (amd64, arm64, arm) picks each device's build.
	URL string
	// Checksum is go-getter's checksum option: "sha256:<hex>" (one
	// architecture) or "file:<URL of a SHA256SUMS file>"; "" checks none.
	Checksum string
}

// AgentJobOptions shape the device agent's job. Zero values take the
// defaults.
type AgentJobOptions struct {
	// JobID defaults to contract.AgentJobID.
	JobID string
	// Datacenters default to all ("*").
	Datacenters []string
	// Selector is a fleet selector (a Nomad node filter expression);
	// where it translates into constraints (see selectorConstraints) the
	// agent runs only on the matching devices.
	Selector string
	// Command is the fleetplan binary on the device.
	Command string
	// ConsulAddr and NomadAddr are the device's own agents, as the task
	// sees them (Nomad interpolation allowed). A ConsulAddr given here is
	// passed as -consul-addr; the default goes through the environment
	// (see DefaultAgentConsulAddr).
	ConsulAddr string
	NomadAddr  string
	// KVPrefix is the Consul KV folder of the application configs ("":
	// the agent's default).
	KVPrefix string
	// SummaryPrefix is the Consul KV folder of the device summaries ("":
	// the agent's default).
	SummaryPrefix string
	// ExtraArgs are appended to the agent's arguments.
	ExtraArgs []string
	// Env is added to the task's environment (e.g. CONSUL_HTTP_TOKEN).
	Env map[string]string
	// Meta is added to the job meta.
	Meta map[string]string
	// TokensFromVariable renders the agent's tokens from its Nomad
	// Variable (AgentVariablePath) into its environment with a template
	// (AgentTokensTemplate); without it the job has no template.
	TokensFromVariable bool
	// Artifact, when set, fetches the agent binary on each device and runs
	// it (AgentArtifactCommand) instead of Command.
	Artifact *AgentArtifact
	// CPU (MHz) and MemoryMB of the task; defaults 50 and 64.
	CPU      int
	MemoryMB int
}

// AgentJob builds the system job that runs `fleetplan agent` on every
// device (raw_exec, one allocation per device):
//
//	fleetplan agent -addr ${NOMAD_IP_probe}:${NOMAD_PORT_probe}
//	  -node ${node.unique.name} [-consul-addr <ConsulAddr>] -nomad-addr <NomadAddr>
//
// with, by default, FLEETPLAN_AGENT_CONSUL_ADDR=${meta.consul.http_addr}
// in the environment instead of -consul-addr.
//
// The agent deregisters its checks when it stops; the kill timeout leaves it
// the time to.
func AgentJob(opts AgentJobOptions) *api.Job {
	id := opts.JobID
	if id == "" {
		id = contract.AgentJobID
	}
	dcs := opts.Datacenters
	if len(dcs) == 0 {
		dcs = []string{"*"}
	}
	command := orDefault(opts.Command, DefaultAgentCommand)
	if opts.Artifact != nil {
		command = AgentArtifactCommand
	}
	args := []string{
		"agent",
		"-addr", "${NOMAD_IP_" + AgentPortLabel + "}:${NOMAD_PORT_" + AgentPortLabel + "}",
		"-node", "${node.unique.name}",
	}
	env := map[string]string{}
	if opts.ConsulAddr != "" && opts.ConsulAddr != DefaultAgentConsulAddr {
		args = append(args, "-consul-addr", opts.ConsulAddr)
	} else {
		env[agentConsulAddrEnv] = DefaultAgentConsulAddr
	}
	args = append(args, "-nomad-addr", orDefault(opts.NomadAddr, DefaultAgentNomadAddr))
	if opts.KVPrefix != "" {
		args = append(args, "-kv-prefix", opts.KVPrefix)
	}
	if opts.SummaryPrefix != "" {
		args = append(args, "-summary-prefix", opts.SummaryPrefix)
	}
	args = append(args, opts.ExtraArgs...)
	cpu, mem := opts.CPU, opts.MemoryMB
	if cpu <= 0 {
		cpu = 50
	}
	if mem <= 0 {
		mem = 64
	}

	task := api.NewTask("agent", "raw_exec")
	task.Config = map[string]any{"command": command, "args": args}
	maps.Copy(env, opts.Env)
	if len(env) > 0 {
		task.Env = env
	}
	if a := opts.Artifact; a != nil {
		art := &api.TaskArtifact{
			GetterSource: new(a.URL),
			GetterMode:   new("file"),
			RelativeDest: new(AgentArtifactCommand),
		}
		if a.Checksum != "" {
			art.GetterOptions = map[string]string{"checksum": a.Checksum}
		}
		task.Artifacts = []*api.TaskArtifact{art}
	}
	if opts.TokensFromVariable {
		task.Templates = []*api.Template{{
			EmbeddedTmpl: new(AgentTokensTemplate(id)),
			DestPath:     new(AgentTokensFile),
			Envvars:      new(true),
			ChangeMode:   new("restart"),
			Perms:        new("0600"),
		}}
	}
	task.Resources = &api.Resources{CPU: new(cpu), MemoryMB: new(mem)}
	task.KillTimeout = new(15 * time.Second)
	task.KillSignal = "SIGTERM"

	group := api.NewTaskGroup("agent", 1)
	group.Networks = []*api.NetworkResource{{DynamicPorts: []api.Port{{Label: AgentPortLabel}}}}
	group.RestartPolicy = &api.RestartPolicy{
		Attempts: new(10),
		Interval: new(5 * time.Minute),
		Delay:    new(5 * time.Second),
		Mode:     new("delay"),
	}
	group.AddTask(task)

	job := api.NewSystemJob(id, id, "global", 50)
	job.Datacenters = dcs
	job.Constraints = selectorConstraints(opts.Selector)
	job.Meta = map[string]string{contract.MetaComponent: contract.ComponentAgent}
	maps.Copy(job.Meta, opts.Meta)
	job.AddTaskGroup(group)
	return job
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
