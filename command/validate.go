package command

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/mattn/go-isatty"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/scheduler"
)

func init() {
	register(&cli.Command{
		Name:      "validate",
		Usage:     "check rollout policy files, offline",
		ArgsUsage: "FILE|DIR...",
		Description: `Checks rollout policy files against the policy language and the field's
rules (canary first, cumulative waves ending at 100 %, health and rollback
defined, no big bang, ...) and prints every problem with its file, line and
source. Needs no Nomad or Consul. A folder stands for the *.fleet.hcl files
in it.

Exit status: 0 when every file is valid (warnings are printed), 1 when a
file has errors, 2 on usage errors.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print one JSON object: {\"valid\": bool, \"diagnostics\": [...]}"},
			&cli.BoolFlag{Name: "no-color", Usage: "print diagnostics without colors (also when NO_COLOR is set)"},
		},
		Action: validateAction,
	})
}

func validateAction(c *cli.Context) error {
	if c.NArg() == 0 {
		return exit(ExitUsage, "validate: give at least one policy file or folder\nUsage: fleetplan validate [-json] FILE|DIR...")
	}
	paths, diags := hcl.ExpandPaths(c.Args().Slice())
	policies, files, pdiags := hcl.ParseFilesWithSources(paths...)
	diags = append(diags, pdiags...)

	if c.Bool("json") {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetIndent("", "  ")
		if err := enc.Encode(hcl.Report(diags)); err != nil {
			return exit(ExitInternal, "validate: %v", err)
		}
		if diags.HasErrors() {
			return cli.Exit("", ExitInvalid)
		}
		return nil
	}

	color := useColor(c)
	if err := hcl.WriteDiagnostics(c.App.ErrWriter, files, diags, color); err != nil {
		return exit(ExitInternal, "validate: %v", err)
	}
	errs, warns := countDiagnostics(diags)
	if errs > 0 {
		return exit(ExitInvalid, "Validation failed: %s, %s.", plural(errs, "error"), plural(warns, "warning"))
	}
	fmt.Fprintln(c.App.Writer, validSummary(policies, warns))
	return nil
}

// validSummary is the line printed when every file is valid.
func validSummary(policies []*scheduler.Policy, warns int) string {
	names := make([]string, len(policies))
	for i, p := range policies {
		names[i] = fmt.Sprintf("%q (%s)", p.Name, p.File)
	}
	s := fmt.Sprintf("Success! %s valid: %s", plural(len(policies), "rollout"), strings.Join(names, ", "))
	if warns > 0 {
		s += fmt.Sprintf(", with %s", plural(warns, "warning"))
	}
	return s + "."
}

func countDiagnostics(diags hcl2.Diagnostics) (errs, warns int) {
	for _, d := range diags {
		if d.Severity == hcl2.DiagError {
			errs++
		} else {
			warns++
		}
	}
	return errs, warns
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// useColor says whether diagnostics get colors: on a terminal, unless
// -no-color or NO_COLOR (https://no-color.org) says otherwise.
func useColor(c *cli.Context) bool {
	return !noColor(c) && isTerminal(c.App.ErrWriter)
}

// isTerminal says whether w is a terminal (a character device such as
// /dev/null is not).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	return isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())
}
