package agent_test

import (
	"github.com/fleetplan/fleetplan/agent"
	"github.com/fleetplan/fleetplan/checks"
)

// The layer 3 output contract tests read outputs the way the watcher does.
func init() { agent.SetParseCheckOutput(checks.ParseCheckOutput) }
