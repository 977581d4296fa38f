// Package command is fleetplan's command-line interface.
package command

import (
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// commands is filled by the init functions of the files that define them, so
// that each command lives in its own file.
var commands []*cli.Command

func register(c *cli.Command) { commands = append(commands, c) }

// App builds the CLI application.
func App() *cli.App {
	cli.VersionFlag = &cli.BoolFlag{Name: "version", Aliases: []string{"v"}, Usage: "print the version", DisableDefaultText: true}
	cli.HelpFlag = &cli.BoolFlag{Name: "help", Aliases: []string{"h"}, Usage: "show help", DisableDefaultText: true}
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, buildVersion().String()) }
	app := &cli.App{
		Name:                 "fleetplan",
		Usage:                "roll software versions out to fleets of edge devices on Nomad and Consul",
		Version:              buildVersion().Version,
		EnableBashCompletion: true,
		Flags:                quietGlobals(globalFlags()),
		Commands:             prepareCommands(commands, ""),
		CustomAppHelpTemplate: cli.AppHelpTemplate + `
ENVIRONMENT:
   Every command that talks to a cluster takes the nomad and consul CLIs'
   connection flags (-address, -token, -region, -namespace, -ca-cert, ...,
   -consul-address, -consul-token, ...) with their environment variables
   (NOMAD_ADDR, NOMAD_TOKEN, CONSUL_HTTP_ADDR, ...) as defaults; see
   ` + "`fleetplan COMMAND -h`" + `. Flags may come before or after the command and
   its arguments. NO_COLOR turns colors off, like -no-color.

` + exitCodesHelp,
		// Without arguments: the help; an unknown command is a usage error.
		Action: usageAction,
		ExitErrHandler: func(*cli.Context, error) {
			// Exit codes are handled by Run.
		},
	}
	return app
}

func quietGlobals(f []cli.Flag) []cli.Flag {
	quietBools(f)
	return f
}

// RunApp runs app with args, flags anywhere (see reorderArgs).
func RunApp(app *cli.App, args []string) error {
	return app.Run(reorderArgs(app, args))
}

// Run runs the CLI with args and returns the process exit code.
func Run(args []string) int {
	err := RunApp(App(), args)
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
