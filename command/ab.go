package command

import (
	"fmt"
	"io"

	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
)

// printAB prints an a-b run's comparison of its groups (status, and the
// end of apply); nothing for other runs or before the comparison.
func printAB(w io.Writer, r *scheduler.Rollout) {
	if r == nil || r.AB == nil {
		return
	}
	report.WriteABText(w, report.BuildAB(r))
}

// heldText is the closing line of an a-b run that kept both groups.
func heldText(r *scheduler.Rollout) string {
	a, b := 0, 0
	if r.AB != nil {
		a, b = r.AB.Overall.A.Devices, r.AB.Overall.B.Devices
	}
	return fmt.Sprintf("==> A/B %s is held: %d device(s) run %s (B, slot %s), %d keep %s (A, slot %s, still the active version). "+
		"To promote B, apply it again with ab.promote_if = \"not-worse\"; the next release starts from slot %s.",
		r.App, b, r.Version, r.Candidate, a, orDash(r.PreviousVersion), slotOrNone(r.Active), slotOrNone(r.Active))
}
