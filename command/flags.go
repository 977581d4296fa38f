package command

import (
	"os"
	"slices"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/store"
)

// Flag categories, as `fleetplan COMMAND -h` groups them.
const (
	catNomad  = "Nomad API (like the nomad CLI)"
	catConsul = "Consul API (like the consul CLI)"
	catState  = "fleetplan state"
)

// globalFlags are the application's flags; they may be given before or
// after the command (reorderArgs moves them).
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"FLEETPLAN_LOG_LEVEL"}, Usage: "trace, debug, info, warn or error"},
		&cli.BoolFlag{Name: "log-json", EnvVars: []string{"FLEETPLAN_LOG_JSON"}, Usage: "write logs as JSON"},
		&cli.BoolFlag{Name: "no-color", Usage: "no colors in any output (also when NO_COLOR is set to anything)"},
	}
}

// connectionFlags are the flags of every command that talks to a cluster:
// the nomad and consul CLIs' own, with their environment variables as the
// defaults (the clients' DefaultConfig reads them; a flag overrides), and
// the KV root of fleetplan's state.
func connectionFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "address", Category: catNomad, EnvVars: []string{"NOMAD_ADDR"}, Usage: "the address of the Nomad server (default http://127.0.0.1:4646)"},
		&cli.StringFlag{Name: "token", Category: catNomad, EnvVars: []string{"NOMAD_TOKEN"}, Usage: "the SecretID of a Nomad ACL token"},
		&cli.StringFlag{Name: "region", Category: catNomad, EnvVars: []string{"NOMAD_REGION"}, Usage: "the Nomad region to send requests to"},
		&cli.StringFlag{Name: "namespace", Category: catNomad, EnvVars: []string{"NOMAD_NAMESPACE"}, Usage: "the Nomad namespace of the slot jobs (rollouts outside \"default\" are kept apart per namespace)"},
		&cli.StringFlag{Name: "ca-cert", Category: catNomad, EnvVars: []string{"NOMAD_CACERT"}, Usage: "PEM file of the CA that signed Nomad's certificate"},
		&cli.StringFlag{Name: "client-cert", Category: catNomad, EnvVars: []string{"NOMAD_CLIENT_CERT"}, Usage: "PEM client certificate for Nomad's TLS"},
		&cli.StringFlag{Name: "client-key", Category: catNomad, EnvVars: []string{"NOMAD_CLIENT_KEY"}, Usage: "PEM private key of -client-cert"},
		&cli.StringFlag{Name: "tls-server-name", Category: catNomad, EnvVars: []string{"NOMAD_TLS_SERVER_NAME"}, Usage: "the server name (SNI) to verify Nomad's certificate with"},
		&cli.BoolFlag{Name: "tls-skip-verify", Category: catNomad, EnvVars: []string{"NOMAD_SKIP_VERIFY"}, Usage: "do not verify Nomad's TLS certificate (not recommended)"},

		&cli.StringFlag{Name: "consul-address", Category: catConsul, EnvVars: []string{"CONSUL_HTTP_ADDR"}, Usage: "the address of the Consul agent, [https://]host:port (default 127.0.0.1:8500)"},
		&cli.StringFlag{Name: "consul-token", Category: catConsul, EnvVars: []string{"CONSUL_HTTP_TOKEN"}, Usage: "a Consul ACL token (CONSUL_HTTP_TOKEN_FILE is read too)"},
		&cli.StringFlag{Name: "consul-ca-cert", Category: catConsul, EnvVars: []string{"CONSUL_CACERT"}, Usage: "PEM file of the CA that signed Consul's certificate"},
		&cli.StringFlag{Name: "consul-client-cert", Category: catConsul, EnvVars: []string{"CONSUL_CLIENT_CERT"}, Usage: "PEM client certificate for Consul's TLS"},
		&cli.StringFlag{Name: "consul-client-key", Category: catConsul, EnvVars: []string{"CONSUL_CLIENT_KEY"}, Usage: "PEM private key of -consul-client-cert"},
		// CONSUL_HTTP_SSL_VERIFY=false means the opposite of this flag, so it
		// is not bound to it; the Consul client reads it.
		&cli.BoolFlag{Name: "consul-tls-skip-verify", Category: catConsul, Usage: "do not verify Consul's TLS certificate (not recommended; default: CONSUL_HTTP_SSL_VERIFY=false)"},

		&cli.StringFlag{Name: "kv-prefix", Category: catState, Value: store.DefaultPrefix, EnvVars: []string{"FLEETPLAN_KV_PREFIX"}, Usage: "the Consul KV folder fleetplan keeps its state in"},
	}
}

// offlineCommands never talk to a cluster: they get no connection flags.
// The device agent itself (`fleetplan agent`) is configured by its own
// flags.
var offlineCommands = []string{"validate", "fmt", "version", "completion", "man", "help", "agent"}

// prepareCommands returns copies of cmds (flags keep state between runs
// in one process, so every App gets its own connection flags) with the
// connection flags on every command that talks to a cluster (keeping a
// command's own flag of the same name) and, before each command runs, the
// clients and the colors configured from them.
func prepareCommands(cmds []*cli.Command, parent string) []*cli.Command {
	out := make([]*cli.Command, len(cmds))
	for i, orig := range cmds {
		cp := *orig
		c := &cp
		out[i] = c
		c.Flags = slices.Clone(orig.Flags)
		path := strings.TrimSpace(parent + " " + c.Name)
		if len(c.Subcommands) > 0 {
			if c.Action == nil {
				c.Action = usageAction
			}
			c.Subcommands = prepareCommands(c.Subcommands, path)
		}
		quietBools(c.Flags)
		if isUsageOnly(c) {
			continue
		}
		if !slices.Contains(offlineCommands, path) {
			for _, f := range connectionFlags() {
				if !hasFlag(c.Flags, f.Names()[0]) {
					c.Flags = append(c.Flags, f)
				}
			}
		}
		before := c.Before
		c.Before = func(ctx *cli.Context) error {
			configure(ctx)
			if before != nil {
				return before(ctx)
			}
			return nil
		}
	}
	return out
}

// quietBools drops "(default: false)" from the help of boolean flags, as
// the nomad and consul CLIs print them.
func quietBools(flags []cli.Flag) {
	for _, f := range flags {
		if b, ok := f.(*cli.BoolFlag); ok && !b.Value {
			b.DisableDefaultText = true
		}
	}
}

// isUsageOnly says whether c only groups subcommands.
func isUsageOnly(c *cli.Command) bool { return len(c.Flags) == 0 && len(c.Subcommands) > 0 }

func hasFlag(flags []cli.Flag, name string) bool {
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// configure sets the operator's connection settings from the command's
// flags (every command sets them, so nothing carries over between runs in
// one process) and turns colors off when asked.
func configure(c *cli.Context) {
	s := operator.Settings{}
	if hasFlag(c.Command.Flags, "address") {
		s = operator.Settings{
			NomadAddress:       c.String("address"),
			NomadToken:         c.String("token"),
			NomadRegion:        c.String("region"),
			NomadNamespace:     c.String("namespace"),
			NomadCACert:        c.String("ca-cert"),
			NomadClientCert:    c.String("client-cert"),
			NomadClientKey:     c.String("client-key"),
			NomadTLSServerName: c.String("tls-server-name"),
			ConsulAddress:      c.String("consul-address"),
			ConsulToken:        c.String("consul-token"),
			ConsulCACert:       c.String("consul-ca-cert"),
			ConsulClientCert:   c.String("consul-client-cert"),
			ConsulClientKey:    c.String("consul-client-key"),
		}
		if c.IsSet("tls-skip-verify") {
			v := c.Bool("tls-skip-verify")
			s.NomadSkipVerify = &v
		}
		if c.IsSet("consul-tls-skip-verify") {
			v := c.Bool("consul-tls-skip-verify")
			s.ConsulSkipVerify = &v
		}
	}
	if f, ok := findFlag(c.Command.Flags, "kv-prefix").(*cli.StringFlag); ok && f.Category == catState {
		s.KVPrefix = c.String("kv-prefix")
	}
	operator.Configure(s)
	if noColor(c) {
		lipgloss.SetColorProfile(termenv.Ascii)
	}
}

// noColor says whether colors are off: -no-color (before or after the
// command) or NO_COLOR set to anything (https://no-color.org).
func noColor(c *cli.Context) bool {
	if os.Getenv("NO_COLOR") != "" {
		return true
	}
	for _, ctx := range c.Lineage() {
		if ctx.Command != nil && hasFlag(ctx.Command.Flags, "no-color") && ctx.Bool("no-color") {
			return true
		}
	}
	return c.Bool("no-color")
}

// reorderArgs lets flags come anywhere, as operators type them: urfave/cli
// v2 stops parsing a command's flags at its first positional argument
// (`validate FILE -json`) and takes the application's flags only before
// the command. It returns the arguments in the order urfave/cli parses:
// the application's flags, the command path, the command's flags, then the
// positional arguments (after "--" when one of them starts with "-"). A
// flag goes to the deepest command that defines it, else to the
// application. Everything after "--" stays positional; the shell
// completion request is left as it is.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || slices.Contains(args, "--generate-bash-completion") {
		return args
	}
	type flagArg struct {
		name  string
		token []string
	}
	var (
		path  []*cli.Command
		cmds  = app.Commands
		flags []flagArg
		pos   []string
	)
	// lookup finds a flag on the command path, the application, or a
	// command below the path (the path may not be complete yet).
	lookup := func(name string) cli.Flag {
		for i := len(path) - 1; i >= 0; i-- {
			if f := findFlag(path[i].Flags, name); f != nil {
				return f
			}
		}
		if f := findFlag(app.Flags, name); f != nil {
			return f
		}
		return findFlagBelow(cmds, name)
	}
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			fa := flagArg{name: name, token: []string{a}}
			f := lookup(name)
			if !hasValue && f != nil && takesValue(f) && i+1 < len(args) {
				i++
				fa.token = append(fa.token, args[i])
			}
			flags = append(flags, fa)
			continue
		}
		if len(pos) == 0 {
			if c := findCommand(cmds, a); c != nil {
				path = append(path, c)
				cmds = c.Subcommands
				continue
			}
		}
		pos = append(pos, a)
	}
	out := []string{args[0]}
	levels := make([][]string, len(path)+1) // 0: the application
	for _, fa := range flags {
		level := 0
		if len(path) > 0 {
			level = len(path) // unknown flags: the command reports them
		}
		if findFlag(app.Flags, fa.name) != nil || isHelpFlag(fa.name) && len(path) == 0 {
			level = 0
		}
		for j := len(path) - 1; j >= 0; j-- {
			if findFlag(path[j].Flags, fa.name) != nil || isHelpFlag(fa.name) {
				level = j + 1
				break
			}
		}
		levels[level] = append(levels[level], fa.token...)
	}
	out = append(out, levels[0]...)
	for j, c := range path {
		out = append(out, c.Name)
		out = append(out, levels[j+1]...)
	}
	if slices.ContainsFunc(pos, func(p string) bool { return len(p) > 1 && p[0] == '-' }) {
		out = append(out, "--")
	}
	return append(out, pos...)
}

func isHelpFlag(name string) bool { return name == "h" || name == "help" }

func findFlag(flags []cli.Flag, name string) cli.Flag {
	if isHelpFlag(name) {
		return cli.HelpFlag
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) {
			return f
		}
	}
	return nil
}

func findFlagBelow(cmds []*cli.Command, name string) cli.Flag {
	for _, c := range cmds {
		if f := findFlag(c.Flags, name); f != nil {
			return f
		}
		if f := findFlagBelow(c.Subcommands, name); f != nil {
			return f
		}
	}
	return nil
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue says whether a flag consumes the next argument.
func takesValue(f cli.Flag) bool {
	if dg, ok := f.(cli.DocGenerationFlag); ok {
		return dg.TakesValue()
	}
	return true
}
