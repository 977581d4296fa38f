package command

import (
	tea "github.com/charmbracelet/bubbletea"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
)

// watchStatus follows a rollout until it finishes: the live view in a
// terminal, plain timestamped lines otherwise.
func watchStatus(c *cli.Context, op *operator.Operator, app string) error {
	if _, err := op.LoadRun(c.Context, app); err != nil {
		return operatorError(err)
	}
	load := op.Loader(app)
	if !isTerminal(c.App.Writer) {
		return plainWatch(c.Context, c.App.Writer, load)
	}
	m := newLiveModel(c.Context, load, nil)
	_, err := tea.NewProgram(m, tea.WithContext(c.Context)).Run()
	if err != nil && c.Context.Err() == nil {
		return exit(ExitInternal, "live view: %v", err)
	}
	return nil
}
