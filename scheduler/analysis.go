package scheduler

import (
	"fmt"
	"sort"
	"strings"
)

// AnalysisKind names the pattern of a failed stage's failures.
type AnalysisKind string

const (
	// AnalysisNone: no device failed.
	AnalysisNone AnalysisKind = "none"
	// AnalysisArtifact: every device that reached a verdict failed; the
	// release itself is bad.
	AnalysisArtifact AnalysisKind = "artifact"
	// AnalysisCompatibility: failures concentrated in one node class while
	// the other classes are healthy.
	AnalysisCompatibility AnalysisKind = "compatibility"
	// AnalysisInfrastructure: failures scattered across classes.
	AnalysisInfrastructure AnalysisKind = "infrastructure"
	// AnalysisInconclusive: a single failure next to healthy devices is
	// too little to name a pattern (the rollback starts at the first
	// failure, so the others may simply not have failed yet).
	AnalysisInconclusive AnalysisKind = "inconclusive"
)

// FailureAnalysis explains a failed stage from the pattern of its failures.
// It is carried on the rollback decision (Decision.Analysis) so that the
// report, status and notifiers read it as data; String words it.
type FailureAnalysis struct {
	Kind      AnalysisKind `json:"kind"`
	Attempted int          `json:"attempted"`
	Failed    int          `json:"failed"`
	// Classes are the node classes with failures, sorted; ClassAttempted
	// and ClassFailed count the one class of a compatibility issue.
	Classes        []string `json:"classes,omitempty"`
	ClassAttempted int      `json:"class_attempted,omitempty"`
	ClassFailed    int      `json:"class_failed,omitempty"`
	// Layer is the health layer every failure was seen at, 0 when they
	// differ.
	Layer int `json:"layer,omitempty"`
	// Examples are up to three "device: reason" lines.
	Examples []string `json:"examples,omitempty"`
	// Undecided devices had no verdict yet when the rollback began.
	Undecided int `json:"undecided,omitempty"`
}

// AnalyzeFailures explains a failed stage from the pattern of its failures:
// every device failing (or most devices, at the same application or
// functional layer in several classes) points at the artifact, failures
// concentrated in one node class at a compatibility problem, scattered
// failures at the infrastructure.
func AnalyzeFailures(recs []*DeviceRecord) FailureAnalysis {
	// Only devices that reached a verdict count: after a fail-fast some are
	// still starting.
	var decided []*DeviceRecord
	var a FailureAnalysis
	for _, rec := range recs {
		if rec.State == DeviceVerifying || rec.State == DeviceSwitching {
			a.Undecided++
			continue
		}
		decided = append(decided, rec)
	}
	t := TallyDevices(decided)
	a.Attempted, a.Failed = t.Attempted, t.Failed
	if a.Failed == 0 {
		a.Kind = AnalysisNone
		return a
	}
	byClass := map[string][]*DeviceRecord{}
	layers := map[int]int{}
	for _, rec := range decided {
		byClass[rec.Class] = append(byClass[rec.Class], rec)
		if rec.FailedInRun() {
			layers[rec.Layer]++
			if len(a.Examples) < 3 {
				a.Examples = append(a.Examples, rec.Name+": "+rec.Reason)
			}
		}
	}
	if len(layers) == 1 {
		for l := range layers {
			a.Layer = l
		}
	}
	for class, recs := range byClass {
		if TallyDevices(recs).Failed > 0 {
			a.Classes = append(a.Classes, class)
		}
	}
	sort.Strings(a.Classes)
	switch {
	case a.Failed == a.Attempted:
		a.Kind = AnalysisArtifact
	case a.Failed*2 > a.Attempted && len(a.Classes) > 1 && a.Layer >= 3:
		// Most devices failed the same application or functional layer
		// in several classes: the release, even when a device that had
		// not yet met the fault looked healthy at that moment.
		a.Kind = AnalysisArtifact
	case a.Failed == 1 && a.Attempted > 1:
		a.Kind = AnalysisInconclusive
	case len(a.Classes) == 1 && len(byClass) > 1:
		a.Kind = AnalysisCompatibility
		ct := TallyDevices(byClass[a.Classes[0]])
		a.ClassAttempted, a.ClassFailed = ct.Attempted, ct.Failed
	default:
		a.Kind = AnalysisInfrastructure
	}
	return a
}

// String words the analysis for a person.
func (a FailureAnalysis) String() string {
	layer := ""
	if a.Layer > 0 {
		layer = fmt.Sprintf(" at layer %d", a.Layer)
	}
	examples := ""
	if len(a.Examples) > 0 {
		examples = " (" + strings.Join(a.Examples, "; ") + ")"
	}
	pending := ""
	if a.Undecided > 0 {
		pending = fmt.Sprintf("; %d device(s) had no verdict yet when the rollback began", a.Undecided)
	}
	switch a.Kind {
	case AnalysisNone, "":
		return "no device failed"
	case AnalysisArtifact:
		if a.Failed < a.Attempted {
			return fmt.Sprintf("artifact issue: most devices that reached a verdict failed (%d of %d)%s in classes %s%s%s.", a.Failed, a.Attempted, layer, strings.Join(a.Classes, ", "), examples, pending)
		}
		return fmt.Sprintf("artifact issue: every device that reached a verdict failed (%d of %d)%s%s%s.", a.Failed, a.Attempted, layer, examples, pending)
	case AnalysisInconclusive:
		return fmt.Sprintf("inconclusive: a single device failed%s%s, %d other(s) were healthy at that moment; too few failures to tell an artifact, compatibility or infrastructure issue%s.",
			layer, examples, a.Attempted-1, pending)
	case AnalysisCompatibility:
		return fmt.Sprintf("compatibility issue: failures concentrated in node class %s (%d of %d failed, other classes healthy)%s%s%s.",
			strings.Join(a.Classes, ", "), a.ClassFailed, a.ClassAttempted, layer, examples, pending)
	default:
		return fmt.Sprintf("infrastructure issue: %d scattered failures across classes %s%s%s%s.", a.Failed, strings.Join(a.Classes, ", "), layer, examples, pending)
	}
}
