package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"text/tabwriter"
	"time"

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

// oneRollout returns the ROLLOUT argument; flags may also follow it
// (`fleetplan approve detector -m "looks good"`).
func oneRollout(c *cli.Context, verb string) (string, error) {
	args, err := regArgs(c)
	if err != nil {
		return "", exit(ExitUsage, "%s: %v", verb, err)
	}
	if len(args) != 1 {
		return "", exit(ExitUsage, "%s takes exactly one ROLLOUT name (see `fleetplan %s -h`)", verb, verb)
	}
	return args[0], nil
}

func actorOf(c *cli.Context) string {
	if a := c.String("actor"); a != "" {
		return a
	}
	return store.DefaultActor()
}

func loadRun(ctx context.Context, w *wiring, app string) (*scheduler.Rollout, error) {
	r, err := w.store.Load(ctx, app)
	if err != nil {
		return nil, exit(ExitInternal, "reading rollout %q: %v", app, err)
	}
	if r == nil {
		return nil, exit(1, "no rollout named %q (list them with `fleetplan status`)", app)
	}
	return r, nil
}

func statusAction(c *cli.Context) error {
	w, err := connect(logger(c))
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ctx := c.Context
	args, err := regArgs(c)
	if err != nil {
		return exit(ExitUsage, "status: %v", err)
	}
	if len(args) == 0 {
		return listRollouts(c, w)
	}
	app := args[0]
	if c.Bool("watch") {
		return watchStatus(c, w, app)
	}
	r, err := loadRun(ctx, w, app)
	if err != nil {
		return err
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

func listRollouts(c *cli.Context, w *wiring) error {
	apps, err := rolloutNames(c.Context, w)
	if err != nil {
		return exit(ExitInternal, "listing rollouts: %v", err)
	}
	var runs []*scheduler.Rollout
	for _, app := range apps {
		r, err := w.store.LoadState(c.Context, app)
		if err != nil {
			return exit(ExitInternal, "reading rollout %q: %v", app, err)
		}
		if r != nil {
			runs = append(runs, r)
		}
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
	app, err := oneRollout(c, "approve")
	if err != nil {
		return err
	}
	w, err := connect(logger(c))
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	r, err := loadRun(c.Context, w, app)
	if err != nil {
		return err
	}
	if r.Finished() {
		return exit(1, "rollout %q is finished (%s); there is nothing to approve", app, r.Outcome)
	}
	if r.Phase != scheduler.PhaseAwaitingApproval {
		return exit(1, "rollout %q is in %s, not waiting for approval; an approval is only taken once the canary passed its gate (see `fleetplan status %s`)", app, describe(r), app)
	}
	rec := &scheduler.ApprovalRecord{Actor: actorOf(c), Time: time.Now(), Message: c.String("message"), Saw: scheduler.CanarySummary(r)}
	if err := w.store.Approve(c.Context, app, rec); err != nil {
		return exit(ExitInternal, "recording the approval of %q: %v", app, err)
	}
	sink, _ := w.auditTrail("", rec.Actor)
	sink.Record(c.Context, scheduler.Event{Time: rec.Time, Rollout: app, RunID: r.ID, Phase: r.Phase, Actor: rec.Actor, Action: "approve", Outcome: "ok", Detail: rec.Saw + " " + rec.Message})
	fmt.Fprintf(c.App.Writer, "Approved rollout %s (%s) as %s. The controller starts the waves.\n", app, rec.Saw, rec.Actor)
	return nil
}

func describe(r *scheduler.Rollout) string {
	if r.Step != "" {
		return fmt.Sprintf("%s/%s", r.Phase, r.Step)
	}
	return string(r.Phase)
}

func rollbackAction(c *cli.Context) error {
	app, err := oneRollout(c, "rollback")
	if err != nil {
		return err
	}
	w, err := connect(logger(c))
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	r, err := loadRun(c.Context, w, app)
	if err != nil {
		return err
	}
	if r.Finished() {
		return exit(1, "rollout %q is finished (%s); to go back to an earlier version, apply that version's policy", app, r.Outcome)
	}
	req := &scheduler.Request{Actor: actorOf(c), Time: time.Now(), Reason: c.String("reason")}
	if err := w.store.RequestRollback(c.Context, app, req); err != nil {
		return exit(ExitInternal, "requesting the rollback of %q: %v", app, err)
	}
	sink, _ := w.auditTrail("", req.Actor)
	sink.Record(c.Context, scheduler.Event{Time: req.Time, Rollout: app, RunID: r.ID, Phase: r.Phase, Actor: req.Actor, Action: "rollback-request", Outcome: "ok", Detail: req.Reason})
	// If no controller runs the rollout, run the rollback here.
	_, release, lerr := w.lock(c.Context, app, false)
	if lerr != nil {
		fmt.Fprintf(c.App.Writer, "Rollback requested; the running controller takes the fleet back (follow it with `fleetplan status -watch %s`).\n", app)
		return nil
	}
	defer release()
	fmt.Fprintf(c.App.Writer, "No controller is running %s: rolling back here.\n", app)
	return runRecovery(c, w, r, req.Actor)
}

// runRecovery runs a controller on a rollout without its policy file: enough
// to carry out a rollback, which needs nothing but the slots.
func runRecovery(c *cli.Context, w *wiring, r *scheduler.Rollout, actor string) error {
	p := &scheduler.Policy{Name: r.App, MaxParallel: scheduler.DefaultMaxParallel, Release: scheduler.Release{Version: r.Version}, Strategy: r.Strategy}
	cluster := newRecoveryCluster(w, p)
	ui := newProgress(c.App.Writer)
	sink, _ := w.auditTrail("", actor)
	ctl := &scheduler.Controller{
		Policy: p, Cluster: cluster, Health: nil, Store: w.store, Registry: w.registry(), Logger: w.log, Actor: actor,
		OnEvent: func(e scheduler.Event) { sink.Record(c.Context, e); ui.Event(e) },
	}
	res, err := ctl.Run(c.Context)
	if err != nil && !errors.Is(err, scheduler.ErrHalted) {
		return exit(ExitInternal, "rolling back %s: %v", r.App, err)
	}
	if res != nil {
		ui.Summary(res)
	}
	return nil
}

func pauseAction(c *cli.Context) error {
	app, err := oneRollout(c, "pause")
	if err != nil {
		return err
	}
	w, err := connect(logger(c))
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	r, err := loadRun(c.Context, w, app)
	if err != nil {
		return err
	}
	if r.Finished() {
		return exit(1, "rollout %q is finished (%s); there is nothing to pause", app, r.Outcome)
	}
	req := &scheduler.Request{Actor: actorOf(c), Time: time.Now(), Reason: c.String("reason")}
	if err := w.store.RequestPause(c.Context, app, req); err != nil {
		return exit(ExitInternal, "pausing %q: %v", app, err)
	}
	sink, _ := w.auditTrail("", req.Actor)
	sink.Record(c.Context, scheduler.Event{Time: req.Time, Rollout: app, RunID: r.ID, Phase: r.Phase, Actor: req.Actor, Action: "pause", Outcome: "ok", Detail: req.Reason})
	fmt.Fprintf(c.App.Writer, "Paused %s: no new device switch or stage starts until `fleetplan resume %s`. Health gates and automatic rollback stay active.\n", app, app)
	return nil
}

func resumeAction(c *cli.Context) error {
	app, err := oneRollout(c, "resume")
	if err != nil {
		return err
	}
	w, err := connect(logger(c))
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	r, err := loadRun(c.Context, w, app)
	if err != nil {
		return err
	}
	if r.Finished() {
		return exit(1, "rollout %q is finished (%s); there is nothing to resume", app, r.Outcome)
	}
	actor := actorOf(c)
	if err := w.store.RequestResume(c.Context, app); err != nil {
		return exit(ExitInternal, "resuming %q: %v", app, err)
	}
	sink, _ := w.auditTrail("", actor)
	sink.Record(c.Context, scheduler.Event{Time: time.Now(), Rollout: app, RunID: r.ID, Phase: r.Phase, Actor: actor, Action: "resume", Outcome: "ok"})
	if r.Halt == nil {
		fmt.Fprintf(c.App.Writer, "Resumed %s.\n", app)
		return nil
	}
	// A halted rollout has no controller: clear the halt under the lock.
	_, release, err := w.lock(c.Context, app, false)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	defer release()
	if r, err = loadRun(c.Context, w, app); err != nil {
		return err
	}
	scheduler.Resume(r)
	for _, d := range r.Devices {
		if err := w.store.SaveDevice(c.Context, app, d); err != nil {
			return exit(ExitInternal, "saving device %s: %v", d.Name, err)
		}
	}
	if err := w.store.SaveRollout(c.Context, r); err != nil {
		return exit(ExitInternal, "saving rollout %s: %v", app, err)
	}
	fmt.Fprintf(c.App.Writer, "Cleared the halt of %s; run `fleetplan apply %s` to go on from %s.\n", app, orDash(r.PolicyFile), describe(r))
	return nil
}
