package command

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/plugin"
)

func init() {
	register(&cli.Command{
		Name:  "agent",
		Usage: "run the device agent (health layers 1-4 as Consul checks), or install it on the fleet",
		Description: `Runs on a device (as the Nomad system job fleetplan-agent, see
"fleetplan agent install"): serves probe endpoints and registers Consul checks
in the device's own Consul agent, named by health layer:

  fleetplan L1 connectivity         the Nomad client, node status, heartbeat age
  fleetplan L2 system               CPU, memory, disk, temperature against thresholds
  fleetplan L3 version and metrics  per app instance: health, version, and a metrics line
  fleetplan L4 functional           per app instance: the policy's functional probe

The thresholds come from the policies, which "fleetplan apply" writes to Consul
KV under -kv-prefix. SIGINT or SIGTERM deregisters the checks and stops.

-consul-addr is the device's own Consul agent; when it is empty (or an
unresolved Nomad interpolation such as ${meta.consul.http_addr}), the agent
asks its Nomad client which Consul agent that client uses. Other Consul and
Nomad settings (tokens, TLS) come from the standard environment variables.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Value: "127.0.0.1:7474", EnvVars: []string{"FLEETPLAN_AGENT_ADDR"}, Usage: "listen address of the probe endpoints, host:port"},
			&cli.StringFlag{Name: "advertise", EnvVars: []string{"FLEETPLAN_AGENT_ADVERTISE"}, Usage: "host:port Consul's checks call (default: -addr)"},
			&cli.StringFlag{Name: "node", EnvVars: []string{"FLEETPLAN_AGENT_NODE"}, Usage: "the device's Consul node name (default: the local Consul agent's)"},
			&cli.StringFlag{Name: "consul-addr", EnvVars: []string{"FLEETPLAN_AGENT_CONSUL_ADDR"}, Usage: "the device's own Consul agent, host:port (default: the one the Nomad client uses)"},
			&cli.StringFlag{Name: "nomad-addr", Value: "http://127.0.0.1:4646", EnvVars: []string{"FLEETPLAN_AGENT_NOMAD_ADDR"}, Usage: "the device's own Nomad client"},
			&cli.StringFlag{Name: "kv-prefix", Value: agent.DefaultKVPrefix, EnvVars: []string{"FLEETPLAN_AGENT_KV_PREFIX"}, Usage: "Consul KV folder of the application configs"},
			&cli.StringFlag{Name: "summary-prefix", Value: contract.DefaultSummaryPrefix, EnvVars: []string{"FLEETPLAN_AGENT_SUMMARY_PREFIX"}, Usage: "Consul KV folder the device summaries are written to (<folder>/<app>/<node>)"},
			&cli.DurationFlag{Name: "summary-jitter", Value: agent.DefaultSummaryJitter, Usage: "longest random delay before answering a summary request (0: none)"},
			&cli.StringFlag{Name: "service-name", Value: agent.DefaultServiceName, Usage: `Consul service the agent registers itself as (tag "prometheus", meta metrics_path=/metrics) for Prometheus' Consul discovery; "-" registers none`},
			&cli.DurationFlag{Name: "check-interval", Value: agent.DefaultCheckInterval, Usage: "interval of the node checks and of service checks whose policy gives none"},
			&cli.StringFlag{Name: "disk-path", Value: "/", Usage: "file system whose usage layer 2 measures"},
			&cli.StringFlag{Name: "default-system", EnvVars: []string{"FLEETPLAN_AGENT_DEFAULT_SYSTEM"}, Usage: `layer 2 limits where no policy sets one, e.g. "cpu=95,temperature=80" or "cpu=off" (default cpu=90,memory=90,disk=95,temperature=85)`},
			&cli.StringSliceFlag{Name: "app", Usage: "register per-instance checks only for this application (repeatable; default: every fleetplan-managed one)"},
			&cli.GenericFlag{Name: "exec-allow", Value: &repeatedFlag{}, Usage: `allow the exec probe's command NAME to run /path/to/program (repeatable), "NAME=/path[,timeout]", timeout default 10s; a policy names only NAME, a program from Consul KV never runs`},
		},
		Action: agentAction,
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "register the fleetplan-agent system job in Nomad (NOMAD_ADDR)",
				Description: `Registers (or updates) the Nomad system job fleetplan-agent, which runs
"fleetplan agent" with raw_exec on every device from ${meta.edge.bin_dir}/fleetplan
(-command). The device's Consul agent defaults to the node meta consul.http_addr
(falling back to the one its Nomad client uses), its Nomad client to the address
the client advertises.

With ACLs, -token-from-variable gives the agents their Consul and Nomad
tokens through the Nomad Variable nomad/jobs/fleetplan-agent (items
consul_token and nomad_token), which the job's tasks read with their
workload identity in a template rendered into their environment: the
tokens are in no job spec, process argument or log. -consul-token-file and
-nomad-token-file write that variable first (the tokens are read from the
files, never from the command line).

-artifact URL fetches the agent binary on each device (Nomad's artifact
block) instead of running -command; ${attr.cpu.arch} in the URL (amd64,
arm64, arm) picks each device's build. -checksum is "sha256:<hex>" or
"file:<URL of a SHA256SUMS file>" (one checksum per architecture).`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "selector", Usage: `fleet selector (Nomad node filter, e.g. 'Meta.fleet == "vision"'); its equality terms become constraints`},
					&cli.StringSliceFlag{Name: "datacenter", Usage: "datacenters to run in (default: all)"},
					&cli.StringFlag{Name: "command", Value: jobs.DefaultAgentCommand, Usage: "the fleetplan binary on the devices"},
					&cli.StringFlag{Name: "consul-addr", Value: jobs.DefaultAgentConsulAddr, Usage: "the device's Consul agent as the task sees it"},
					&cli.StringFlag{Name: "nomad-addr", Value: jobs.DefaultAgentNomadAddr, Usage: "the device's Nomad client as the task sees it"},
					&cli.StringFlag{Name: "kv-prefix", Usage: "Consul KV folder of the application configs (default: the agent's)"},
					&cli.StringFlag{Name: "summary-prefix", Usage: "Consul KV folder of the device summaries (default: the agent's)"},
					&cli.StringFlag{Name: "default-system", Usage: `the agents' layer 2 limits where no policy sets one, e.g. "cpu=off" on a shared dev host`},
					&cli.StringSliceFlag{Name: "app", Usage: "the agents register per-instance checks only for this application (repeatable)"},
					&cli.GenericFlag{Name: "exec-allow", Value: &repeatedFlag{}, Usage: `the agents' exec probe allow-list, "NAME=/path[,timeout]" (repeatable; the path may use Nomad interpolation such as ${meta.edge.bin_dir})`},
					&cli.BoolFlag{Name: "token-from-variable", Usage: "the agents read their tokens from the Nomad Variable nomad/jobs/fleetplan-agent (consul_token, nomad_token) through a template"},
					&cli.StringFlag{Name: "consul-token-file", Usage: "write the agents' Consul token, read from this file, to their Nomad Variable (implies -token-from-variable)"},
					&cli.StringFlag{Name: "nomad-token-file", Usage: "write the agents' Nomad token, read from this file, to their Nomad Variable (implies -token-from-variable)"},
					&cli.StringFlag{Name: "artifact", Usage: "URL of the agent binary the devices fetch (may use ${attr.cpu.arch}); default: run -command"},
					&cli.StringFlag{Name: "checksum", Usage: `checksum of -artifact: "sha256:<hex>" or "file:<URL of SHA256SUMS>"`},
					&cli.BoolFlag{Name: "print", Usage: "print the job as JSON instead of registering it"},
				},
				Action: agentInstallAction,
			},
			{
				Name:   "uninstall",
				Usage:  "stop and purge the fleetplan-agent job (the agents deregister their checks)",
				Action: agentUninstallAction,
			},
		},
	})
}

func agentAction(c *cli.Context) error {
	execAllow := repeated(c, "exec-allow")
	if c.NArg() > 0 {
		return exit(ExitUsage, "unknown agent subcommand %q (see `fleetplan agent -h`)", c.Args().First())
	}
	log := logger(c)
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ncfg := nomadapi.DefaultConfig()
	ncfg.Address = c.String("nomad-addr")
	nc, err := nomadapi.NewClient(ncfg)
	if err != nil {
		return exit(ExitUsage, "configuring the Nomad client for %s: %v", ncfg.Address, err)
	}
	consulAddr := c.String("consul-addr")
	if consulAddr == "" || strings.Contains(consulAddr, "${") {
		consulAddr, err = consulAddrFromNomad(ctx, nc)
		if err != nil {
			return exit(ExitInternal, "no -consul-addr given and the Nomad client at %s does not say which Consul agent it uses: %v", ncfg.Address, err)
		}
		log.Info("using the Nomad client's Consul agent", "consul", consulAddr)
	}
	ccfg := consulapi.DefaultConfig()
	if u, err := url.Parse(consulAddr); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
		ccfg.Address, ccfg.Scheme = u.Host, u.Scheme
	} else {
		ccfg.Address = consulAddr
	}
	cc, err := consulapi.NewClient(ccfg)
	if err != nil {
		return exit(ExitUsage, "configuring the Consul client for %s: %v", consulAddr, err)
	}
	defaults, err := agent.ParseThresholds(c.String("default-system"))
	if err != nil {
		return exit(ExitUsage, "-default-system: %v", err)
	}
	allow, err := agent.ParseExecAllow(execAllow, true)
	if err != nil {
		return exit(ExitUsage, "-exec-allow: %v", err)
	}
	a, err := agent.New(agent.Config{
		Addr:          c.String("addr"),
		AdvertiseAddr: c.String("advertise"),
		Node:          c.String("node"),
		KVPrefix:      c.String("kv-prefix"),
		SummaryPrefix: c.String("summary-prefix"),
		SummaryJitter: summaryJitter(c.Duration("summary-jitter")),
		ServiceName:   c.String("service-name"),
		NomadAddr:     ncfg.Address,
		CheckInterval: c.Duration("check-interval"),
		DiskPath:      c.String("disk-path"),
		Defaults:      defaults,
		Apps:          c.StringSlice("app"),
		ExecAllow:     allow,
		NewProbe:      plugin.NewProbe,
		Logger:        log,
	}, cc, nc)
	if err != nil {
		return exit(ExitUsage, "%v", err)
	}
	if err := a.Run(ctx); err != nil {
		return exit(ExitInternal, "%v", err)
	}
	return nil
}

// summaryJitter maps the flag's 0 (no delay) to the agent's "none".
func summaryJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}

// consulAddrFromNomad asks the Nomad agent which Consul agent it uses: its
// configuration's consul address (Nomad 1.6: config.Consul; 1.7 and later:
// config.Consuls, the default cluster first). It retries until the Nomad
// client answers or a minute has passed.
func consulAddrFromNomad(ctx context.Context, nc *nomadapi.Client) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last error
	for {
		var self nomadapi.AgentSelf
		_, err := nc.Raw().Query("/v1/agent/self", &self, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err == nil {
			if addr := consulAddrOf(self.Config); addr != "" {
				return addr, nil
			}
			return "", errors.New("its configuration has no Consul address")
		}
		last = err
		select {
		case <-ctx.Done():
			return "", last
		case <-time.After(2 * time.Second):
		}
	}
}

func consulAddrOf(cfg map[string]any) string {
	addrOf := func(v any) string {
		m, _ := v.(map[string]any)
		s, _ := m["Addr"].(string)
		return s
	}
	if s := addrOf(cfg["Consul"]); s != "" {
		return s
	}
	if list, ok := cfg["Consuls"].([]any); ok {
		for _, v := range list {
			if m, _ := v.(map[string]any); m["Name"] == "default" || m["Name"] == nil {
				if s := addrOf(v); s != "" {
					return s
				}
			}
		}
		for _, v := range list {
			if s := addrOf(v); s != "" {
				return s
			}
		}
	}
	return ""
}

func agentInstallAction(c *cli.Context) error {
	execAllow := repeated(c, "exec-allow")
	var extra []string
	if v := c.String("default-system"); v != "" {
		if _, err := agent.ParseThresholds(v); err != nil {
			return exit(ExitUsage, "-default-system: %v", err)
		}
		extra = append(extra, "-default-system", v)
	}
	for _, app := range c.StringSlice("app") {
		extra = append(extra, "-app", app)
	}
	if _, err := agent.ParseExecAllow(execAllow, false); err != nil {
		return exit(ExitUsage, "-exec-allow: %v", err)
	}
	for _, e := range execAllow {
		extra = append(extra, "-exec-allow", e)
	}
	artifact, err := agentArtifact(c.String("artifact"), c.String("checksum"))
	if err != nil {
		return exit(ExitUsage, "%v", err)
	}
	consulFile, nomadFile := c.String("consul-token-file"), c.String("nomad-token-file")
	if (consulFile == "") != (nomadFile == "") {
		return exit(ExitUsage, "-consul-token-file and -nomad-token-file go together: the agents' Nomad Variable holds both tokens")
	}
	job := jobs.AgentJob(jobs.AgentJobOptions{
		ExtraArgs:          extra,
		Datacenters:        c.StringSlice("datacenter"),
		Selector:           c.String("selector"),
		Command:            c.String("command"),
		ConsulAddr:         c.String("consul-addr"),
		NomadAddr:          c.String("nomad-addr"),
		KVPrefix:           c.String("kv-prefix"),
		SummaryPrefix:      c.String("summary-prefix"),
		TokensFromVariable: c.Bool("token-from-variable") || consulFile != "",
		Artifact:           artifact,
	})
	if c.Bool("print") {
		return printJSON(c, job)
	}
	nc, err := operator.NomadClient()
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	if consulFile != "" {
		if err := putAgentTokens(ctx, nc, *job.ID, consulFile, nomadFile); err != nil {
			return exit(ExitInternal, "%v", err)
		}
		fmt.Fprintf(c.App.Writer, "wrote the agents' tokens to the Nomad Variable %s\n", jobs.AgentVariablePath(*job.ID))
	}
	resp, _, err := nc.Jobs().Register(job, (&nomadapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return exit(ExitInternal, "registering job %s: %v", *job.ID, err)
	}
	fmt.Fprintf(c.App.Writer, "registered job %s (evaluation %s); every matching device now runs `fleetplan agent`\n", *job.ID, resp.EvalID)
	for _, w := range strings.Split(strings.TrimSpace(resp.Warnings), "\n") {
		if w != "" {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
	}
	return nil
}

// agentArtifact checks -artifact and -checksum.
func agentArtifact(url, checksum string) (*jobs.AgentArtifact, error) {
	if url == "" {
		if checksum != "" {
			return nil, errors.New("-checksum needs -artifact (the URL of the agent binary)")
		}
		return nil, nil
	}
	if !strings.Contains(url, "://") {
		return nil, fmt.Errorf("-artifact %q is not a URL (e.g. https://releases.example.com/fleetplan_linux_${attr.cpu.arch})", url)
	}
	if checksum != "" {
		kind, value, ok := strings.Cut(checksum, ":")
		switch {
		case !ok || value == "":
			return nil, fmt.Errorf(`-checksum %q: want "sha256:<hex>" or "file:<URL of a SHA256SUMS file>"`, checksum)
		case kind == "file":
		case kind == "sha256" || kind == "sha512" || kind == "sha1" || kind == "md5":
			if _, err := hex.DecodeString(value); err != nil {
				return nil, fmt.Errorf("-checksum %q: the %s sum is not hex: %v", checksum, kind, err)
			}
		default:
			return nil, fmt.Errorf(`-checksum %q: unknown kind %q (sha256, sha512, sha1, md5 or file)`, checksum, kind)
		}
	}
	return &jobs.AgentArtifact{URL: url, Checksum: checksum}, nil
}

// putAgentTokens writes the agents' Nomad Variable from two token files.
// The tokens go from the files to Nomad only: never to an argument, the
// job or the output.
func putAgentTokens(ctx context.Context, nc *nomadapi.Client, jobID, consulFile, nomadFile string) error {
	items := nomadapi.VariableItems{}
	for item, file := range map[string]string{jobs.VariableItemConsulToken: consulFile, jobs.VariableItemNomadToken: nomadFile} {
		b, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("reading the agents' token for %s: %w", item, err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return fmt.Errorf("the token file %s is empty", file)
		}
		items[item] = tok
	}
	path := jobs.AgentVariablePath(jobID)
	v := &nomadapi.Variable{Path: path, Items: items}
	if _, _, err := nc.Variables().Update(v, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("writing the Nomad Variable %s (the token needs write on variables at that path): %w", path, err)
	}
	return nil
}

func agentUninstallAction(c *cli.Context) error {
	nc, err := operator.NomadClient()
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	if _, _, err := nc.Jobs().Deregister(contract.AgentJobID, true, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return exit(ExitInternal, "purging job %s: %v", contract.AgentJobID, err)
	}
	fmt.Fprintf(c.App.Writer, "purged job %s; the agents deregister their checks as they stop\n", contract.AgentJobID)
	return nil
}

// repeatedFlag is a repeatable string flag whose values are kept whole
// (a StringSliceFlag splits them at commas, and an -exec-allow entry has
// one before its timeout).
type repeatedFlag struct{ values []string }

func (f *repeatedFlag) Set(v string) error {
	f.values = append(f.values, v)
	return nil
}

func (f *repeatedFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.values, " ")
}

// repeated returns the values of a repeatedFlag and empties it: the
// commands are built once per process (register), so the flag's value is
// shared by every run of the App; each action takes its values first.
func repeated(c *cli.Context, name string) []string {
	f, ok := c.Generic(name).(*repeatedFlag)
	if !ok || f == nil {
		return nil
	}
	out := f.values
	f.values = nil
	return out
}
