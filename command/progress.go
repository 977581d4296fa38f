package command

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
)

// progress prints a running rollout as timestamped lines, one per action or
// decision, readable in a terminal and in CI logs alike.
type progress struct {
	mu sync.Mutex
	w  io.Writer
}

func newProgress(w io.Writer) *progress { return &progress{w: w} }

// Event prints one controller event. Intents are printed at debug level
// only: the outcome line follows a moment later.
func (p *progress) Event(e scheduler.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e.Outcome == "intent" && e.Action != "register-candidate" && e.Action != "confirm" {
		return
	}
	where := string(e.Phase)
	if e.Stage != "" {
		where += " " + e.Stage
	}
	line := fmt.Sprintf("%s [%s]", e.Time.Format("15:04:05"), where)
	if e.Device != "" {
		line += " " + e.Device
	}
	action := strings.TrimPrefix(e.Action, "decision:")
	if strings.HasPrefix(e.Action, "decision:") {
		line += " " + action + ": " + e.Detail
		if hint := eventHint(e); hint != "" {
			line += "; " + hint
		}
	} else if hint := eventHint(e); hint != "" {
		line += " " + action + " " + e.Outcome + ": " + e.Detail + "; " + hint
	} else {
		line += " " + action + " " + e.Outcome
		if e.Detail != "" {
			line += ": " + e.Detail
		}
	}
	fmt.Fprintln(p.w, line)
	if e.Decision != nil && len(e.Decision.Checklist) > 0 {
		writeChecklist(p.w, e.Decision.Checklist)
	}
}

// writeChecklist prints the pre-flight checklist, one item a line.
func writeChecklist(w io.Writer, cl scheduler.Checklist) {
	for _, it := range cl {
		mark := "[x]"
		if !it.OK {
			mark = "[ ]"
		}
		fmt.Fprintf(w, "    %s %s: %s\n", mark, it.Name, it.Detail)
		if !it.OK && it.Fix != "" {
			fmt.Fprintf(w, "        fix: %s\n", it.Fix)
		}
	}
}

// Summary prints a run's per-stage outcome.
func (p *progress) Summary(r *scheduler.Rollout) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\n%-10s %8s %8s %8s %8s %8s  %s\n", "STAGE", "PERCENT", "DEVICES", "ATTEMPT", "FAILED", "OFFLINE", "VERDICT")
	for _, st := range r.Stages {
		v := st.Verdict
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(p.w, "%-10s %7.0f%% %8d %8d %8d %8d  %s\n", st.Name, st.Percent, st.Devices, st.Attempted, st.Failed, st.Offline, v)
	}
	counts := map[scheduler.DeviceState]int{}
	for _, d := range r.Devices {
		counts[d.State]++
	}
	var parts []string
	for s, n := range counts {
		parts = append(parts, fmt.Sprintf("%s=%d", s, n))
	}
	sort.Strings(parts)
	fmt.Fprintf(p.w, "devices: %s\n\n", strings.Join(parts, " "))
}

func fmtDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// eventHint words what an operator can do after an event, with the
// commands: the controller only names the situation.
func eventHint(e scheduler.Event) string {
	switch {
	case e.Action == "await-approval" && e.Outcome == "waiting":
		return fmt.Sprintf("approve with `fleetplan approve %s`", e.Rollout)
	case e.Decision != nil && e.Decision.Kind == scheduler.DecisionPaused:
		return fmt.Sprintf("resume with `fleetplan resume %s`", e.Rollout)
	case e.Decision != nil && e.Decision.Halt != nil:
		return report.RemedyText(e.Rollout, e.Decision.Halt)
	}
	return ""
}
