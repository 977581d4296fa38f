package command

import (
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "status",
		Usage:     "show a rollout's state (the fleet-deploy-state block, stages, devices)",
		ArgsUsage: "[ROLLOUT]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the state as one JSON object"},
			&cli.BoolFlag{Name: "watch", Usage: "follow the rollout as it runs"},
			&cli.BoolFlag{Name: "devices", Usage: "list every device of the run"},
		},
		Action: statusAction,
	})
	register(&cli.Command{
		Name:      "approve",
		Usage:     "approve a canary that passed its gate, so the waves can start",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Usage: "why it is approved (recorded)"},
			&cli.StringFlag{Name: "actor", Usage: "who approves (default: user@host)"},
		},
		Action: approveAction,
	})
	register(&cli.Command{
		Name:      "rollback",
		Usage:     "take every device of a running rollout back to the old version",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Usage: "why (recorded)"},
			&cli.StringFlag{Name: "actor", Usage: "who asks (default: user@host)"},
		},
		Action: rollbackAction,
	})
	register(&cli.Command{
		Name:      "pause",
		Usage:     "stop a rollout from switching more devices or starting the next stage",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "reason", Usage: "why (recorded)"},
			&cli.StringFlag{Name: "actor", Usage: "who asks (default: user@host)"},
		},
		Action: pauseAction,
	})
	register(&cli.Command{
		Name:      "resume",
		Usage:     "resume a paused rollout, or retry the stage of a halted one",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "actor", Usage: "who asks (default: user@host)"},
		},
		Action: resumeAction,
	})
}

// rolloutCommand starts a command on one ROLLOUT (flags may follow it:
// `fleetplan approve detector -m "looks good"`), connected to the cluster.
func rolloutCommand(c *cli.Context) (*base, string, error) {
	b, err := initCommand(c, withExactArgs(1, "ROLLOUT name"), withConnect())
	if err != nil {
		return nil, "", err
	}
	return b, b.args[0], nil
}

func actorOf(c *cli.Context) string {
	if a := c.String("actor"); a != "" {
		return a
	}
	return store.DefaultActor()
}

func statusAction(c *cli.Context) error {
	b, err := initCommand(c, withConnect())
	if err != nil {
		return err
	}
	if len(b.args) == 0 {
		return listRollouts(c, b.op)
	}
	app := b.args[0]
	if c.Bool("watch") {
		return watchStatus(c, b.op, app)
	}
	r, err := b.op.LoadRun(c.Context, app)
	if err != nil {
		return operatorError(err)
	}
	if c.Bool("json") {
		return printJSON(c, statusJSON(r))
	}
	printStatus(c.App.Writer, r, c.Bool("devices"))
	return nil
}

type statusDoc struct {
	State     report.DeployState        `json:"state"`
	Rollout   *scheduler.Rollout        `json:"rollout"`
	Devices   []*scheduler.DeviceRecord `json:"devices"`
	Analysis  string                    `json:"failure_analysis,omitempty"`
	Decisions []scheduler.Decision      `json:"decisions"`
}

func statusJSON(r *scheduler.Rollout) statusDoc {
	doc := statusDoc{State: report.NewDeployState(r), Rollout: r, Devices: sortedRecords(r), Decisions: r.Decisions}
	doc.Analysis = lastAnalysis(r)
	return doc
}

func lastAnalysis(r *scheduler.Rollout) string {
	if a := r.LastAnalysis(); a != nil {
		return "Failure analysis: " + a.String()
	}
	return ""
}

func sortedRecords(r *scheduler.Rollout) []*scheduler.DeviceRecord {
	out := make([]*scheduler.DeviceRecord, 0, len(r.Devices))
	for _, d := range r.Devices {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Stage != out[j].Stage {
			return out[i].Stage < out[j].Stage
		}
		return out[i].Name < out[j].Name
	})
	return out
}

func printStatus(w interface{ Write([]byte) (int, error) }, r *scheduler.Rollout, devices bool) {
	report.WriteDeployState(w, report.NewDeployState(r))
	fmt.Fprintf(w, "\nRollout %s, run %s: %s -> %s (slot %s -> %s), started %s\n", r.App, r.ID, orDash(r.PreviousVersion), r.Version,
		slotOrNone(r.Active), r.Candidate, r.StartedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSTAGE\tPERCENT\tDEVICES\tHEALTHY\tFAILED\tOFFLINE\tVERDICT")
	for i, st := range r.Stages {
		t := r.StageTally(i)
		healthy := t.Healthy
		verdict := st.Verdict
		if verdict == "" {
			verdict = "-"
			if i == r.Stage && (r.Phase == scheduler.PhaseCanary || r.Phase == scheduler.PhaseWave) {
				verdict = string(r.Step)
				if r.Step == scheduler.StepSoaking {
					verdict += fmt.Sprintf(" (%s left)", fmtDuration(time.Until(st.SoakUntil)))
				}
			}
		}
		failed := max(t.Failed, st.Failed)
		fmt.Fprintf(tw, "%s\t%.0f%%\t%d\t%d\t%d\t%d\t%s\n", st.Name, st.Percent, st.Devices, healthy, failed, st.Offline, verdict)
	}
	tw.Flush()
	if a := lastAnalysis(r); a != "" {
		fmt.Fprintf(w, "\n%s\n", a)
	}
	if devices {
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nDEVICE\tCLASS\tSTAGE\tSTATE\tREASON")
		for _, d := range sortedRecords(r) {
			stage := "-"
			if d.Stage >= 0 && d.Stage < len(r.Stages) {
				stage = r.Stages[d.Stage].Name
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, d.Class, stage, d.State, d.Reason)
		}
		tw.Flush()
	}
	if n := len(r.Decisions); n > 0 {
		fmt.Fprintln(w, "\nLatest decisions:")
		from := n - 5
		if from < 0 {
			from = 0
		}
		for _, d := range r.Decisions[from:] {
			fmt.Fprintf(w, "  %s %-12s %s\n", d.Time.Format("15:04:05"), d.Kind, d.Reason)
		}
	}
}

func slotOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func listRollouts(c *cli.Context, op *operator.Operator) error {
	runs, err := op.Rollouts(c.Context)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	if c.Bool("json") {
		return printJSON(c, runs)
	}
	if len(runs) == 0 {
		fmt.Fprintln(c.App.Writer, "No rollouts yet.")
		return nil
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLLOUT\tVERSION\tPHASE\tOUTCOME\tRUN\tUPDATED")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.App, r.Version, r.Phase, orDash(string(r.Outcome)), r.ID, r.UpdatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func approveAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	rec, err := b.op.Approve(c.Context, app, actorOf(c), c.String("message"))
	if err != nil {
		return operatorError(err)
	}
	fmt.Fprintf(c.App.Writer, "Approved rollout %s (%s) as %s. The controller starts the waves.\n", app, rec.Saw, rec.Actor)
	return nil
}

func rollbackAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	actor := actorOf(c)
	r, lease, err := b.op.Rollback(c.Context, app, actor, c.String("reason"))
	if err != nil {
		return operatorError(err)
	}
	if lease == nil {
		fmt.Fprintf(c.App.Writer, "Rollback requested; the running controller takes the fleet back (follow it with `fleetplan status -watch %s`).\n", app)
		return nil
	}
	defer lease.Release()
	fmt.Fprintf(c.App.Writer, "No controller is running %s: rolling back here.\n", app)
	ui := newProgress(c.App.Writer)
	res, err := b.op.Recover(c.Context, r, lease, actor, ui.Event)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	if res != nil {
		ui.Summary(res)
	}
	return nil
}

func pauseAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	if err := b.op.Pause(c.Context, app, actorOf(c), c.String("reason")); err != nil {
		return operatorError(err)
	}
	fmt.Fprintf(c.App.Writer, "Paused %s: no new device switch or stage starts until `fleetplan resume %s`. Health gates and automatic rollback stay active.\n", app, app)
	return nil
}

func resumeAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	r, cleared, err := b.op.Resume(c.Context, app, actorOf(c))
	if err != nil {
		return operatorError(err)
	}
	if !cleared {
		fmt.Fprintf(c.App.Writer, "Resumed %s.\n", app)
		return nil
	}
	fmt.Fprintf(c.App.Writer, "Cleared the halt of %s; run `fleetplan apply %s` to go on from %s.\n", app, orDash(r.PolicyFile), operator.Describe(r))
	return nil
}
