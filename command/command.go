// Package command is fleetplan's command-line interface.
package command

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// Version is set at build time with -ldflags "-X .../command.Version=...".
var Version = "0.1.0-dev"

// commands is filled by the init functions of the files that define them, so
// that each command lives in its own file.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

// App builds the CLI application.
func App() *cli.App {
	app := &cli.App{
		Name:                 "fleetplan",
		Usage:                "roll software versions out to fleets of edge devices on Nomad and Consul",
		Version:              Version,
		HideVersion:          true,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "warn", EnvVars: []string{"FLEETPLAN_LOG_LEVEL"}, Usage: "trace, debug, info, warn or error"},
			&cli.BoolFlag{Name: "log-json", EnvVars: []string{"FLEETPLAN_LOG_JSON"}, Usage: "write logs as JSON"},
		},
		Commands: commands,
		// Without arguments: the help; an unknown command is a usage error.
		Action: usageAction,
		ExitErrHandler: func(*cli.Context, error) {
			// Exit codes are handled by Run.
		},
	}
	for _, c := range commands {
		if len(c.Subcommands) > 0 && c.Action == nil {
			c.Action = usageAction
		}
	}
	return app
}

// Run runs the CLI with args and returns the process exit code.
func Run(args []string) int {
	err := App().Run(args)
	if err == nil {
		return ExitOK
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintln(os.Stderr, "Error:", err)
	return ExitUsage
}

// logger builds the root logger from the global flags.
func logger(c *cli.Context) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "fleetplan",
		Level:      hclog.LevelFromString(c.String("log-level")),
		JSONFormat: c.Bool("log-json"),
		Output:     os.Stderr,
	})
}
