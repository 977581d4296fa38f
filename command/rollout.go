package command

import (
	"encoding/json"
	"fmt"
	"io"
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
			jsonFlag(),
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
			jsonFlag(),
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
			jsonFlag(),
		},
		Action: pauseAction,
	})
	register(&cli.Command{
		Name:      "resume",
		Usage:     "resume a paused rollout, or retry the stage of a halted one",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "actor", Usage: "who asks (default: user@host)"},
			jsonFlag(),
		},
		Action: resumeAction,
	})
}

// rolloutCommand starts a command on one ROLLOUT (flags may follow it:
// `fleetplan approve detector -m "looks good"`), connected to the cluster;
// the rollout is named after the Nomad namespace (operator.RolloutName).
func rolloutCommand(c *cli.Context) (*base, string, error) {
	b, err := initCommand(c, withExactArgs(1, "ROLLOUT name"), withConnect())
	if err != nil {
		return nil, "", err
	}
	return b, operator.RolloutName(b.args[0]), nil
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
	app := operator.RolloutName(b.args[0])
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
	printAB(w, r)
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
	if err := enc.Encode(v); err != nil {
		return exit(ExitInternal, "writing the JSON output: %v", err)
	}
	return nil
}

// jsonFlag is the -json flag of the commands that act on a rollout.
func jsonFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the result as one JSON object (see the README for its fields)"}
}

// actionDoc is what approve, pause, resume, rollback and catch-up print
// with -json.
type actionDoc struct {
	Rollout string `json:"rollout"`
	Action  string `json:"action"`
	Actor   string `json:"actor,omitempty"`
	// Result is what happened: "approved", "pause-requested", "resumed",
	// "halt-cleared", "rollback-requested", "rolled-back-here",
	// "caught-up".
	Result  string `json:"result"`
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"`
	// Saw is what the canary looked like when it was approved.
	Saw string `json:"saw,omitempty"`
	// State is the rollout's fleet-deploy-state after a rollback run here
	// or a catch-up.
	State *report.DeployState `json:"state,omitempty"`
	// Remaining counts the devices catch-up still has to handle.
	Remaining *int `json:"remaining,omitempty"`
}

// result prints doc as JSON with -json, else its message.
func result(c *cli.Context, doc actionDoc) error {
	if c.Bool("json") {
		return printJSON(c, doc)
	}
	fmt.Fprintln(c.App.Writer, doc.Message)
	return nil
}

// progressWriter is where a command's progress lines go: standard error
// with -json, whose output is one JSON document.
func progressWriter(c *cli.Context) io.Writer {
	if c.Bool("json") {
		return c.App.ErrWriter
	}
	return c.App.Writer
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
	return result(c, actionDoc{Rollout: app, Action: "approve", Actor: rec.Actor, Result: "approved", Saw: rec.Saw, Reason: rec.Message,
		Message: fmt.Sprintf("Approved rollout %s (%s) as %s. The controller starts the waves.", app, rec.Saw, rec.Actor)})
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
	doc := actionDoc{Rollout: app, Action: "rollback", Actor: actor, Reason: c.String("reason")}
	if lease == nil {
		doc.Result = "rollback-requested"
		doc.Message = fmt.Sprintf("Rollback requested; the running controller takes the fleet back (follow it with `fleetplan status -watch %s`).", app)
		return result(c, doc)
	}
	defer lease.Release()
	out := progressWriter(c)
	fmt.Fprintf(out, "No controller is running %s: rolling back here.\n", app)
	ui := newProgress(out)
	res, err := b.op.Recover(c.Context, r, lease, actor, ui.Event)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	doc.Result = "rolled-back-here"
	doc.Message = fmt.Sprintf("Rolled %s back here.", app)
	if res != nil {
		ui.Summary(res)
		st := report.NewDeployState(res)
		doc.State = &st
	}
	if c.Bool("json") {
		return printJSON(c, doc)
	}
	return nil
}

func pauseAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	actor := actorOf(c)
	if err := b.op.Pause(c.Context, app, actor, c.String("reason")); err != nil {
		return operatorError(err)
	}
	return result(c, actionDoc{Rollout: app, Action: "pause", Actor: actor, Result: "pause-requested", Reason: c.String("reason"),
		Message: fmt.Sprintf("Paused %s: no new device switch or stage starts until `fleetplan resume %s`. Health gates and automatic rollback stay active.", app, app)})
}

func resumeAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	actor := actorOf(c)
	r, cleared, err := b.op.Resume(c.Context, app, actor)
	if err != nil {
		return operatorError(err)
	}
	doc := actionDoc{Rollout: app, Action: "resume", Actor: actor, Result: "resumed", Message: fmt.Sprintf("Resumed %s.", app)}
	if cleared {
		doc.Result = "halt-cleared"
		doc.Message = fmt.Sprintf("Cleared the halt of %s; run `fleetplan apply %s` to go on from %s.", app, orDash(r.PolicyFile), operator.Describe(r))
	}
	return result(c, doc)
}
