package command

import (
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
)

// base is what a command's action starts from, in the manner of
// nomad-pack's internal/cli baseCommand: its positional arguments (checked
// by the options given to initCommand), its logger and, with withConnect,
// the operator layer on the cluster.
type base struct {
	c    *cli.Context
	args []string
	log  hclog.Logger
	op   *operator.Operator
}

type baseConfig struct {
	exact   int    // -1: any number of arguments
	what    string // what the arguments are, for the usage error
	connect bool
}

// baseOption configures initCommand.
type baseOption func(*baseConfig)

// withExactArgs requires exactly n positional arguments, described by what
// ("ROLLOUT name") in the usage error.
func withExactArgs(n int, what string) baseOption {
	return func(b *baseConfig) { b.exact, b.what = n, what }
}

// withNoArgs refuses positional arguments.
func withNoArgs() baseOption { return withExactArgs(0, "") }

// withConnect connects to Nomad and Consul (ExitInternal when they do not
// answer).
func withConnect() baseOption { return func(b *baseConfig) { b.connect = true } }

// initCommand checks the arguments and sets up what the options ask for;
// its errors carry their exit code.
func initCommand(c *cli.Context, opts ...baseOption) (*base, error) {
	cfg := baseConfig{exact: -1}
	for _, o := range opts {
		o(&cfg)
	}
	name := commandPath(c)
	args, err := positional(c)
	if err != nil {
		return nil, exit(ExitUsage, "%s: %v", name, err)
	}
	if cfg.exact >= 0 && len(args) != cfg.exact {
		return nil, usageError(c, cfg.exact, cfg.what)
	}
	b := &base{c: c, args: args, log: logger(c)}
	if cfg.connect {
		if err := b.connect(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// connect connects to Nomad and Consul (ExitInternal when they do not
// answer), for commands that check more of their flags first.
func (b *base) connect() error {
	op, err := operator.Connect(b.log)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	b.op = op
	return nil
}

// usageError says how many arguments a command takes.
func usageError(c *cli.Context, n int, what string) error {
	name := commandPath(c)
	switch n {
	case 0:
		return exit(ExitUsage, "%s takes no arguments\nUsage: fleetplan %s [options]", name, name)
	case 1:
		return exit(ExitUsage, "%s takes exactly one %s (see `fleetplan %s -h`)\nUsage: fleetplan %s [options] %s", name, what, name, name, c.Command.ArgsUsage)
	}
	return exit(ExitUsage, "%s takes %d %s (see `fleetplan %s -h`)", name, n, what, name)
}

// usageAction is the action of the application and of commands that only
// group subcommands: the help without arguments, a usage error for an
// unknown command.
func usageAction(c *cli.Context) error {
	where := strings.TrimSpace("fleetplan " + commandPath(c))
	if c.Args().Present() {
		return exit(ExitUsage, "%s: unknown command %q (see `%s -h`)", where, c.Args().First(), where)
	}
	if where != "fleetplan" {
		return cli.ShowSubcommandHelp(c)
	}
	return cli.ShowAppHelp(c)
}

// commandPath names the running command with its parents ("registry
// show"); "" at the application's root.
func commandPath(c *cli.Context) string {
	var names []string
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil || ctx.Command.Name == "" || ctx.Command.Name == c.App.Name {
			continue // the application's root
		}
		names = append([]string{ctx.Command.Name}, names...)
	}
	return strings.Join(names, " ")
}

// positional returns the positional arguments, accepting flags after them
// too (`registry quarantine DEVICE -reason R`), which urfave/cli v2 does
// not.
func positional(c *cli.Context) ([]string, error) {
	var pos []string
	args := c.Args().Slice()
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		var flag cli.Flag
		for _, f := range c.Command.Flags {
			if slices.Contains(f.Names(), name) {
				flag = f
			}
		}
		if flag == nil {
			return nil, fmt.Errorf("flag provided but not defined: -%s", name)
		}
		if _, isBool := flag.(*cli.BoolFlag); isBool && !hasValue {
			value = "true"
		} else if !hasValue {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag needs an argument: -%s", name)
			}
			i++
			value = args[i]
		}
		// Set the flag under its primary name: urfave/cli keeps a separate
		// value per alias.
		if err := c.Set(flag.Names()[0], value); err != nil {
			return nil, fmt.Errorf("invalid value %q for flag -%s: %w", value, name, err)
		}
	}
	return pos, nil
}

// operatorError maps an error of the operator layer to an exit code: a
// request that does not apply is ExitFailed, anything else ExitInternal.
func operatorError(err error) error {
	if operator.IsRefused(err) {
		return exit(ExitFailed, "%v", err)
	}
	return exit(ExitInternal, "%v", err)
}
