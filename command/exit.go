package command

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// Exit codes of every fleetplan command: this table is the only place they
// are defined.
//
//	0    ExitOK         success; plan: no changes
//	1    ExitFailed     apply: the rollout was rolled back (or halted after a
//	                    rollback); plan: there are changes; validate: a policy
//	                    is invalid; fmt: a file is not formatted; status,
//	                    report, approve, pause, resume, rollback, catch-up:
//	                    the request does not apply (no such rollout or run,
//	                    a finished rollout, one not waiting for approval);
//	                    recheck: a device did not answer
//	2    ExitUsage      wrong arguments or flags, an unknown command or
//	                    subcommand; apply: the policy is not valid
//	3    ExitInternal   every other failure: the controller lock is held by
//	                    another controller, Nomad or Consul cannot be reached
//	                    or refused a request, a file cannot be written
//	255  ExitPlanError  plan's errors, like `nomad job plan`
const (
	ExitOK     = 0
	ExitFailed = 1
	// ExitRolledBack, ExitChanges and ExitInvalid name ExitFailed where a
	// command gives it a meaning of its own.
	ExitRolledBack = ExitFailed
	ExitChanges    = ExitFailed
	ExitInvalid    = ExitFailed
	ExitUsage      = 2
	ExitInternal   = 3
	// ExitLockHeld: another controller runs the rollout.
	ExitLockHeld  = ExitInternal
	ExitPlanError = 255
)

// exitCodesHelp is the table above as `fleetplan -h` prints it (and the
// README repeats it).
const exitCodesHelp = `EXIT CODES:
   0    success; plan: no changes
   1    apply: rolled back (or halted after a rollback); plan: changes;
        validate: a policy is invalid; fmt -check: a file is not formatted;
        status, report, approve, pause, resume, rollback, catch-up: the
        request does not apply (no such rollout or run, a finished rollout,
        one not waiting for approval); recheck: a device did not answer
   2    usage: wrong arguments or flags, an unknown command or subcommand;
        apply: the policy is not valid
   3    every other failure: the controller lock is held by another
        controller, Nomad or Consul cannot be reached or refused a request,
        a file cannot be written
   255  plan's errors, like ` + "`nomad job plan`" + `
`

// exit returns an error that makes Run print the message and exit with code.
func exit(code int, format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), code)
}
