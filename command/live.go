package command

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	bprogress "github.com/charmbracelet/bubbles/progress"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
)

// loader reads the current state of a rollout.
type loader func(ctx context.Context) (*scheduler.Rollout, error)

type (
	stateMsg struct {
		r   *scheduler.Rollout
		err error
	}
	eventMsg scheduler.Event
	doneMsg  struct{}
	tickMsg  time.Time
	// changeMsg: the rollout's keys changed (err: the wait ended).
	changeMsg struct{ err error }
	// redrawMsg: time passed (the soak countdown), nothing was read.
	redrawMsg time.Time
)

// liveModel is the live view of a running rollout: the phase, a progress
// bar per stage (switched / healthy / failed / offline), the soak countdown,
// the latest decisions with their reasons and what the rollout waits for.
type liveModel struct {
	ctx    context.Context
	load   loader
	r      *scheduler.Rollout
	err    error
	events []scheduler.Event
	bar    bprogress.Model
	width  int
	done   bool
	quit   func()
	// leaveHint replaces the line that says what q does.
	leaveHint string
	// changes, when set, is followed with a blocking query: the view
	// reads the rollout again only when its keys changed. Without it the
	// view reads it every second.
	changes changesFunc
	waiter  *changeWaiter
}

var (
	styleTitle   = lipgloss.NewStyle().Bold(true)
	styleDim     = lipgloss.NewStyle().Faint(true)
	styleOK      = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
	styleBad     = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	styleWarn    = lipgloss.NewStyle().Foreground(lipgloss.Color("3"))
	styleWaiting = lipgloss.NewStyle().Foreground(lipgloss.Color("6")).Bold(true)
)

func newLiveModel(ctx context.Context, load loader, quit func()) *liveModel {
	bar := bprogress.New(bprogress.WithDefaultGradient(), bprogress.WithoutPercentage())
	bar.Width = 30
	return &liveModel{ctx: ctx, load: load, bar: bar, width: 100, quit: quit}
}

func (m *liveModel) Init() tea.Cmd {
	if m.changes != nil {
		m.waiter = newChangeWaiter(m.changes)
		return tea.Batch(m.waitChange(), redraw())
	}
	return tea.Batch(m.reload(), tick())
}

func tick() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// redraw only redraws (the soak countdown moves); it reads nothing.
func redraw() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return redrawMsg(t) })
}

// waitChange waits for the next change of the rollout's keys.
func (m *liveModel) waitChange() tea.Cmd {
	w := m.waiter
	return func() tea.Msg {
		return changeMsg{err: w.next(m.ctx)}
	}
}

func (m *liveModel) reload() tea.Cmd {
	return func() tea.Msg {
		r, err := m.load(m.ctx)
		return stateMsg{r, err}
	}
}

func (m *liveModel) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			if m.quit != nil {
				m.quit()
			}
			return m, tea.Quit
		}
	case tea.WindowSizeMsg:
		m.width = msg.Width
		if w := msg.Width - 70; w > 10 {
			m.bar.Width = min(w, 40)
		}
	case stateMsg:
		m.r, m.err = msg.r, msg.err
		if m.r != nil && m.r.Finished() && m.quit == nil {
			// status -watch: the rollout is over.
			m.done = true
			return m, tea.Quit
		}
	case eventMsg:
		m.events = append(m.events, scheduler.Event(msg))
		if len(m.events) > 200 {
			m.events = m.events[len(m.events)-200:]
		}
		return m, m.reload()
	case tickMsg:
		return m, tea.Batch(m.reload(), tick())
	case redrawMsg:
		if m.done {
			return m, nil
		}
		return m, redraw()
	case changeMsg:
		if msg.err != nil {
			// The context ended: the program is ending too.
			return m, nil
		}
		return m, tea.Batch(m.reload(), m.waitChange())
	case doneMsg:
		m.done = true
		return m, tea.Sequence(m.reload(), tea.Quit)
	}
	return m, nil
}

func (m *liveModel) View() string {
	var b strings.Builder
	if m.err != nil {
		fmt.Fprintf(&b, "%s %v\n", styleBad.Render("error:"), m.err)
	}
	r := m.r
	if r == nil {
		b.WriteString(styleDim.Render("waiting for the rollout's state...") + "\n")
		return b.String()
	}
	where := string(r.Phase)
	if (r.Phase == scheduler.PhaseCanary || r.Phase == scheduler.PhaseWave) && r.Stage < len(r.Stages) {
		where += " · " + r.Stages[r.Stage].Name + " · " + string(r.Step)
	}
	if r.Paused {
		where += " · " + styleWarn.Render("PAUSED")
	}
	if r.Outcome != "" {
		o := styleOK.Render(string(r.Outcome))
		if r.Outcome != scheduler.OutcomeSucceeded {
			o = styleBad.Render(string(r.Outcome))
		}
		where += " · " + o
	}
	fmt.Fprintf(&b, "%s %s %s  %s\n", styleTitle.Render("fleetplan"), styleTitle.Render(r.App), r.Version, styleDim.Render("run "+r.ID+" · "+string(r.Strategy)))
	fmt.Fprintf(&b, "%s   slots %s (%s) -> %s (%s)\n\n", where, slotOrNone(r.Active), orDash(r.PreviousVersion), r.Candidate, r.Version)

	for i, st := range r.Stages {
		t := r.StageTally(i)
		total, healthy, failed, offline := t.Total, t.Healthy, t.Failed, t.Offline
		switched := t.Total - t.Pending - t.Switching - t.Offline
		frac := 0.0
		if total > 0 {
			frac = float64(healthy) / float64(total)
		}
		status := st.Verdict
		switch {
		case status == "passed":
			status = styleOK.Render("passed")
		case status == "failed":
			status = styleBad.Render("failed")
		case i == r.Stage && (r.Phase == scheduler.PhaseCanary || r.Phase == scheduler.PhaseWave):
			status = string(r.Step)
			if r.Step == scheduler.StepSoaking {
				status += fmt.Sprintf(" %s left", fmtDuration(time.Until(st.SoakUntil)))
				if st.Extended {
					status += styleWarn.Render(" (extended)")
				}
			}
		case status == "":
			status = styleDim.Render("pending")
		}
		fmt.Fprintf(&b, "%-7s %4.0f%%  %s  switched %d/%d  healthy %s  failed %s  offline %d   %s\n",
			st.Name, st.Percent, m.bar.ViewAs(frac), switched, total, styleOK.Render(fmt.Sprint(healthy)), failedText(failed), offline, status)
	}
	if r.Phase == scheduler.PhaseAwaitingApproval {
		fmt.Fprintf(&b, "\n%s the canary passed its gate; approve it with `fleetplan approve %s`\n", styleWaiting.Render("Waiting for approval:"), r.App)
	}
	if r.Halt != nil {
		fmt.Fprintf(&b, "\n%s %s\n", styleBad.Render("Halted:"), report.HaltText(r.App, r.Halt))
	}
	if n := len(r.Decisions); n > 0 {
		b.WriteString("\nLatest decisions:\n")
		for _, d := range r.Decisions[max(0, n-5):] {
			reason := d.Reason
			if m.width > 40 && len(reason) > m.width-24 {
				reason = reason[:m.width-27] + "..."
			}
			fmt.Fprintf(&b, "  %s %-13s %s\n", styleDim.Render(d.Time.Format("15:04:05")), d.Kind, reason)
		}
	}
	if n := len(m.events); n > 0 {
		b.WriteString("\nLatest device actions:\n")
		var shown []scheduler.Event
		for i := n - 1; i >= 0 && len(shown) < 5; i-- {
			if e := m.events[i]; e.Device != "" && e.Outcome != "intent" {
				shown = append(shown, e)
			}
		}
		sort.SliceStable(shown, func(i, j int) bool { return shown[i].Time.Before(shown[j].Time) })
		for _, e := range shown {
			fmt.Fprintf(&b, "  %s %-10s %s %s %s\n", styleDim.Render(e.Time.Format("15:04:05")), e.Device, e.Action, e.Outcome, styleDim.Render(truncate(e.Detail, 60)))
		}
	}
	if !m.done {
		hint := "q: leave the view (the rollout state is kept in Consul)"
		if m.leaveHint != "" {
			hint = m.leaveHint
		}
		b.WriteString(styleDim.Render("\n"+hint) + "\n")
	}
	return b.String()
}

func failedText(n int) string {
	if n > 0 {
		return styleBad.Render(fmt.Sprint(n))
	}
	return fmt.Sprint(n)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

// plainWatch prints one line per change of a rollout's state (no terminal).
// With changes it reads the rollout only when its keys changed; without,
// every second.
func plainWatch(ctx context.Context, w io.Writer, load loader, changes changesFunc) error {
	last := ""
	var waiter *changeWaiter
	if changes != nil {
		waiter = newChangeWaiter(changes)
	}
	for {
		if waiter != nil {
			if err := waiter.next(ctx); err != nil {
				return nil
			}
		}
		r, err := load(ctx)
		if err != nil {
			return err
		}
		line := summaryLine(r)
		if line != last {
			fmt.Fprintf(w, "%s %s\n", time.Now().Format("15:04:05"), line)
			last = line
		}
		if r.Finished() {
			return nil
		}
		if waiter != nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func summaryLine(r *scheduler.Rollout) string {
	parts := []string{fmt.Sprintf("%s %s %s", r.App, r.Version, r.Phase)}
	if r.Step != "" {
		parts[0] += "/" + string(r.Step)
	}
	for i, st := range r.Stages {
		t := r.StageTally(i)
		healthy, failed, offline, total := t.Healthy, t.Failed, t.Offline, t.Total
		parts = append(parts, fmt.Sprintf("%s %d/%d healthy %d failed %d offline", st.Name, healthy, total, failed, offline))
	}
	if r.Outcome != "" {
		parts = append(parts, "outcome "+string(r.Outcome))
	}
	if r.Phase == scheduler.PhaseAwaitingApproval {
		parts = append(parts, "waiting for `fleetplan approve "+r.App+"`")
	}
	return strings.Join(parts, " | ")
}
