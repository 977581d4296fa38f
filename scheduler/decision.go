package scheduler

// DecisionKind names a decision the controller took. Every kind is a
// constant here, so nothing downstream (report, status, notifiers) parses
// the reason's prose.
type DecisionKind string

const (
	DecisionStart        DecisionKind = "start"
	DecisionPlan         DecisionKind = "plan"
	DecisionPreflight    DecisionKind = "preflight"
	DecisionValidated    DecisionKind = "validated"
	DecisionSoak         DecisionKind = "soak"
	DecisionFailFast     DecisionKind = "fail-fast"
	DecisionSoakExtended DecisionKind = "soak-extended"
	DecisionDegradation  DecisionKind = "degradation"
	DecisionGatePassed   DecisionKind = "gate-passed"
	DecisionApproved     DecisionKind = "approved"
	DecisionConfirmed    DecisionKind = "confirmed"
	DecisionRollback     DecisionKind = "rollback"
	DecisionRolledBack   DecisionKind = "rolled-back"
	// DecisionRollbackIncomplete: some devices could not be verified back
	// on the old version.
	DecisionRollbackIncomplete DecisionKind = "rollback-incomplete"
	DecisionHalted             DecisionKind = "halted"
	DecisionPaused             DecisionKind = "paused"
	DecisionResumed            DecisionKind = "resumed"
)

// LastAnalysis returns the failure analysis of the run's latest rollback
// decision, nil when there is none.
func (r *Rollout) LastAnalysis() *FailureAnalysis {
	for i := len(r.Decisions) - 1; i >= 0; i-- {
		if d := r.Decisions[i]; d.Kind == DecisionRollback && d.Analysis != nil {
			return d.Analysis
		}
	}
	return nil
}

// Remedy is what an operator does about a halt. The core names it; the CLI
// words it (with the commands to run).
type Remedy string

const (
	// RemedyResume: fix the cause (Halt.Fix), then resume.
	RemedyResume Remedy = "resume"
	// RemedyResumeOrRollback: resume retries the stage; a rollback takes
	// the whole fleet back.
	RemedyResumeOrRollback Remedy = "resume-or-rollback"
)

// Halt is why a rollout stopped for an operator and what the operator can
// do about it.
type Halt struct {
	// Reason is what stopped the rollout.
	Reason string `json:"reason"`
	// Fix is what must change first, in words ("bring devices back
	// online"); empty when nothing must.
	Fix    string `json:"fix,omitempty"`
	Remedy Remedy `json:"remedy"`
}

// Halted reports whether the rollout waits for an operator after a halt.
func (r *Rollout) Halted() bool { return r.Halt != nil }
