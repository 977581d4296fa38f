package report

import (
	"fmt"
	"io"
	"strings"

	"github.com/fleetplan/fleetplan/scheduler"
)

// DeployState is the field's fleet-deploy-state block, as printed by
// `fleetplan status` (and, with -json, as this object).
type DeployState struct {
	Phase             string   `json:"phase"`
	FleetplanPhase    string   `json:"fleetplan_phase"`
	Strategy          string   `json:"strategy"`
	Artifact          string   `json:"artifact"`
	Version           string   `json:"version"`
	RunID             string   `json:"run_id"`
	FleetTotal        int      `json:"fleet_total"`
	DeployedCount     int      `json:"deployed_count"`
	HealthyCount      int      `json:"healthy_count"`
	QuarantinedCount  int      `json:"quarantined_count"`
	SkippedCount      int      `json:"skipped_count"`
	RollbackAvailable bool     `json:"rollback_available"`
	CurrentWave       string   `json:"current_wave"`
	LastAction        string   `json:"last_action"`
	NextAction        string   `json:"next_action"`
	Blockers          []string `json:"blockers"`
	Outcome           string   `json:"outcome,omitempty"`
}

// fieldPhase maps fleetplan's phases onto the field's coarser ones.
func fieldPhase(r *scheduler.Rollout) string {
	switch r.Phase {
	case scheduler.PhasePrepare, scheduler.PhaseValidate:
		return "PREPARE"
	case scheduler.PhaseCanary:
		if r.Step == scheduler.StepSwitching {
			return "CANARY"
		}
		return "VERIFY"
	case scheduler.PhaseAwaitingApproval, scheduler.PhaseCompare:
		return "VERIFY"
	case scheduler.PhaseWave, scheduler.PhaseRollingBack:
		return "ROLLOUT"
	default:
		return "CONFIRM"
	}
}

// NewDeployState summarises a run.
func NewDeployState(r *scheduler.Rollout) DeployState {
	s := DeployState{
		Phase:          fieldPhase(r),
		FleetplanPhase: string(r.Phase),
		Strategy:       string(r.Strategy),
		Artifact:       fmt.Sprintf("%s %s", r.App, r.Version),
		Version:        r.Version,
		RunID:          r.ID,
		LastAction:     r.LastAction,
		Outcome:        string(r.Outcome),
		Blockers:       []string{},
	}
	if r.Step != "" {
		s.FleetplanPhase += "/" + string(r.Step)
	}
	t := r.FleetTally()
	s.FleetTotal = len(r.Excluded) + t.Total
	s.HealthyCount = t.Healthy
	s.DeployedCount = t.Healthy + t.Verifying + t.Switching + t.FailedNow
	s.QuarantinedCount = t.Quarantined
	s.SkippedCount = t.Offline
	waves := len(r.Stages) - 1
	switch {
	case r.Phase == scheduler.PhaseDone:
		s.CurrentWave = fmt.Sprintf("%d/%d", waves, waves)
	case r.Phase == scheduler.PhaseWave || (r.Phase == scheduler.PhaseRollingBack && r.Stage > 0):
		s.CurrentWave = fmt.Sprintf("%d/%d", r.Stage, waves)
	default:
		s.CurrentWave = fmt.Sprintf("0/%d (canary)", waves)
	}
	// The old slot's job is never touched during a rollout: until the run
	// is confirmed, taking the fleet back is always possible.
	s.RollbackAvailable = !r.Finished()
	if h := r.Halt; h != nil {
		s.Blockers = append(s.Blockers, HaltText(r.App, h))
	}
	if r.Paused {
		s.Blockers = append(s.Blockers, "paused by an operator")
	}
	for _, e := range r.Excluded {
		s.Blockers = append(s.Blockers, fmt.Sprintf("%s excluded: %s", e.Name, e.Reason))
	}
	s.NextAction = nextAction(r)
	return s
}

func nextAction(r *scheduler.Rollout) string {
	switch {
	case r.Outcome == scheduler.OutcomeSucceeded:
		if n := countState(r, scheduler.DeviceSkippedOffline); n > 0 {
			return fmt.Sprintf("catch up %d offline device(s) when they return", n)
		}
		return "none: the rollout is done"
	case r.Outcome == scheduler.OutcomeHeld:
		return fmt.Sprintf("none: the A/B groups are kept (%s stays active); apply with ab.promote_if = \"not-worse\" to promote, or apply the next version", orDash(r.PreviousVersion))
	case r.Outcome == scheduler.OutcomeRollbackIncomplete:
		return fmt.Sprintf("check the devices whose rollback was not verified, then `fleetplan catch-up %s` verifies them again", r.App)
	case r.Outcome == scheduler.OutcomeRolledBack:
		return "fix the release, then apply a new version"
	case r.Halt != nil:
		return "operator decision: " + RemedyText(r.App, r.Halt)
	case r.Paused:
		return fmt.Sprintf("`fleetplan resume %s`", r.App)
	}
	switch r.Phase {
	case scheduler.PhasePrepare, scheduler.PhaseValidate:
		return "validate the plan and start the canary"
	case scheduler.PhaseAwaitingApproval:
		return fmt.Sprintf("human approval of the canary: `fleetplan approve %s`", r.App)
	case scheduler.PhaseCanary, scheduler.PhaseWave:
		st := r.Stages[r.Stage]
		switch r.Step {
		case scheduler.StepSwitching:
			return fmt.Sprintf("switch the devices of %s", st.Name)
		case scheduler.StepSoaking:
			return fmt.Sprintf("soak %s until %s, then evaluate its gate", st.Name, st.SoakUntil.Format("15:04:05"))
		default:
			return fmt.Sprintf("evaluate the gate of %s", st.Name)
		}
	case scheduler.PhaseRollingBack:
		return "finish rolling the devices back to the old slot"
	case scheduler.PhaseConfirm:
		return "make the candidate slot the active one"
	}
	return "-"
}

func countState(r *scheduler.Rollout, s scheduler.DeviceState) int {
	n := 0
	for _, d := range r.Devices {
		if d.State == s {
			n++
		}
	}
	return n
}

// WriteDeployState prints the block.
func WriteDeployState(w io.Writer, s DeployState) {
	blockers := "none"
	if len(s.Blockers) > 0 {
		blockers = strings.Join(s.Blockers, "; ")
	}
	fmt.Fprintf(w, "<fleet-deploy-state>\n")
	fmt.Fprintf(w, "phase: %s (%s)\n", s.Phase, s.FleetplanPhase)
	fmt.Fprintf(w, "strategy: %s\n", s.Strategy)
	fmt.Fprintf(w, "artifact: %s\n", s.Artifact)
	fmt.Fprintf(w, "fleet_total: %d\n", s.FleetTotal)
	fmt.Fprintf(w, "deployed_count: %d\n", s.DeployedCount)
	fmt.Fprintf(w, "healthy_count: %d\n", s.HealthyCount)
	fmt.Fprintf(w, "quarantined_count: %d\n", s.QuarantinedCount)
	fmt.Fprintf(w, "skipped_count: %d\n", s.SkippedCount)
	fmt.Fprintf(w, "rollback_available: %t\n", s.RollbackAvailable)
	fmt.Fprintf(w, "current_wave: %s\n", s.CurrentWave)
	fmt.Fprintf(w, "last_action: %s\n", orDash(s.LastAction))
	fmt.Fprintf(w, "next_action: %s\n", orDash(s.NextAction))
	fmt.Fprintf(w, "blockers: %s\n", blockers)
	fmt.Fprintf(w, "</fleet-deploy-state>\n")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RemedyText words what an operator does about a halt, with the commands
// (the core only names the remedy).
func RemedyText(app string, h *scheduler.Halt) string {
	var s string
	switch h.Remedy {
	case scheduler.RemedyResumeOrRollback:
		s = fmt.Sprintf("`fleetplan resume %s` retries the stage, `fleetplan rollback %s` takes the whole fleet back", app, app)
	default:
		s = fmt.Sprintf("`fleetplan resume %s`", app)
	}
	if h.Fix != "" {
		s = h.Fix + ", then " + s
	}
	return s
}

// HaltText is a halt's reason with its remedy.
func HaltText(app string, h *scheduler.Halt) string {
	return h.Reason + "; " + RemedyText(app, h)
}
