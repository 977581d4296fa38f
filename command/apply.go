package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	fphcl "github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "apply",
		Usage:     "roll a release out: canary, approval, waves, automatic rollback",
		ArgsUsage: "FILE",
		Description: `Runs the rollouts of the policy FILE in the foreground, printing progress, until
each is done or rolled back. A rollout already in progress is resumed where it
was (a controller that was killed can simply be started again). Only one
controller works on a rollout at a time: a second apply exits naming the holder
(or waits, with -wait).

Exit codes: 0 done, 1 rolled back (or halted after a rollback), 2 usage or
validation errors, 3 other failures (with the reason).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "auto-approve", Usage: "approve the canary automatically once it passed its gate (recorded in the audit trail)"},
			&cli.BoolFlag{Name: "detach", Usage: "run the controller in the background and return; follow it with 'fleetplan status -watch ROLLOUT'"},
			&cli.BoolFlag{Name: "wait", Usage: "wait for another controller of the same rollout to finish instead of exiting"},
			&cli.StringFlag{Name: "audit-file", Usage: "also append every audit record to this JSON-lines file"},
			&cli.StringFlag{Name: "actor", Usage: "who runs the rollout (default: user@host)"},
			&cli.DurationFlag{Name: "sample-interval", Value: 2 * time.Second, Usage: "how often health is sampled during a soak"},
			&cli.StringSliceFlag{Name: "notify", Usage: `notifier plugin to tell about approvals needed, rollbacks, phase changes: "log" or "webhook:url=https://..." (repeatable)`},
			&cli.BoolFlag{Name: "json", Usage: "print the final result of every rollout as one JSON object (progress goes to stderr)"},
		},
		Action: applyAction,
	})
}

func applyAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return usageError(c, 1, "policy FILE")
	}
	policies, files, diags := fphcl.ParseFilesWithSources(c.Args().First())
	if diags.HasErrors() {
		_ = fphcl.WriteDiagnostics(c.App.ErrWriter, files, diags, false)
		return exit(ExitUsage, "the policy is not valid; nothing was changed (check it with `fleetplan validate %s`)", c.Args().First())
	} else if len(diags) > 0 {
		_ = fphcl.WriteDiagnostics(c.App.ErrWriter, files, diags, false)
	}
	results := newApplyJSON(c)
	if c.Bool("detach") {
		return detach(c, results)
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logger(c)
	ui := newProgress(c.App.Writer)
	actor := c.String("actor")
	if actor == "" {
		actor = store.DefaultActor()
	}
	op, err := operator.Connect(log)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	operator.QualifyPolicies(policies)
	audit, err := op.AuditSink(c.String("audit-file"), actor)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	defer audit.Close()
	audit.Record(ctx, operator.Note("", "", "apply", "started", fmt.Sprintf("policy %s", c.Args().First()), actor))
	notify, err := newNotifiers(ctx, op, policies, c.StringSlice("notify"), log)
	if err != nil {
		return exit(ExitUsage, "%v", err)
	}
	defer notify.Close()

	code := ExitOK
	for _, p := range policies {
		res := runRollout(ctx, c, op, p, actor, ui, audit, notify)
		results.add(ctx, op, p, res)
		if res > code {
			code = res
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := results.print(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		fmt.Fprintln(c.App.ErrWriter, "Interrupted: the rollout state is saved in Consul; run `fleetplan apply` again to resume, or `fleetplan rollback ROLLOUT`.")
		return cli.Exit("", ExitInternal)
	}
	if code != ExitOK {
		return cli.Exit("", code)
	}
	return nil
}

// runRollout runs one rollout of the policy and returns apply's exit code.
func runRollout(ctx context.Context, c *cli.Context, op *operator.Operator, p *scheduler.Policy, actor string, ui *progress, audit *operator.AuditSink, notify *notifiers) int {
	log := op.Log.Named("apply").With("rollout", p.Name)
	out := c.App.Writer
	if abs, err := filepath.Abs(p.File); err == nil {
		p.File = abs
	}

	lost, release, err := op.Lock(ctx, p.Name, c.Bool("wait"))
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "Error: %v\n", err)
		return ExitInternal
	}
	defer release()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lost:
			log.Error("lost the controller lock; stopping (the next controller resumes from the saved state)")
			cancel()
		case <-ctx.Done():
		}
	}()

	base, err := op.PrepareRelease(ctx, p)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "Error: %v\n", err)
		return ExitInternal
	}
	ctl, stop := op.Controller(operator.Run{
		Policy:         p,
		Base:           base,
		WatchHealth:    true,
		Actor:          actor,
		AutoApprove:    c.Bool("auto-approve"),
		SampleInterval: c.Duration("sample-interval"),
		Audit:          audit,
		Lost:           lost,
		PublishHealthConfig: func(ctx context.Context) error {
			return op.PublishHealthConfig(ctx, p)
		},
		OnEvent: func(e scheduler.Event) {
			notify.Event(ctx, e, p.Release.Version)
			if live := liveProgram.Load(); live != nil {
				live.Send(eventMsg(e))
			} else {
				ui.Event(e)
			}
		},
	})
	defer stop()
	fmt.Fprintf(out, "==> Rollout %s: release %s (policy %s)\n", p.Name, p.Release.Version, p.File)
	var r *scheduler.Rollout
	if isTerminal(out) {
		r, err = runWithLiveView(ctx, cancel, ctl, op, p.Name)
	} else {
		r, err = ctl.Run(ctx)
	}
	if r != nil {
		ui.Summary(r)
	}
	var inProgress *scheduler.InProgressError
	var halted *scheduler.HaltError
	switch {
	case errors.Is(err, scheduler.ErrNothingToDo):
		fmt.Fprintf(out, "No changes: %v\n", err)
		return ExitOK
	case errors.As(err, &inProgress):
		fmt.Fprintf(c.App.ErrWriter, "Error: %v (`fleetplan rollback %s` takes it back)\n", err, inProgress.App)
		return ExitInternal
	case errors.As(err, &halted):
		fmt.Fprintf(c.App.ErrWriter, "Halted: %s\n", report.HaltText(p.Name, &halted.Halt))
		if r != nil && r.RollbackScope != "" {
			return ExitRolledBack
		}
		return ExitInternal
	case err != nil:
		if ctx.Err() != nil {
			return ExitInternal
		}
		fmt.Fprintf(c.App.ErrWriter, "Error: %v\n", err)
		return ExitInternal
	case r.Outcome == scheduler.OutcomeRollbackIncomplete:
		fmt.Fprintf(c.App.ErrWriter, "==> Rollout %s was rolled back, but not every device could be verified on the old version: %s\n", p.Name, lastReason(r))
		fmt.Fprintf(c.App.ErrWriter, "    Check those devices, then `fleetplan catch-up %s` verifies them again.\n", p.Name)
		return ExitRolledBack
	case r.Outcome == scheduler.OutcomeRolledBack:
		fmt.Fprintf(out, "==> Rollout %s was rolled back: %s\n", p.Name, r.RollbackReason)
		return ExitRolledBack
	default:
		fmt.Fprintf(out, "==> Rollout %s is done: %s %s runs in slot %s\n", p.Name, p.Name, r.Version, r.Candidate)
		return ExitOK
	}
}

// detach starts `fleetplan apply` again in the background, in its own
// session, with its output in a log file.
func detach(c *cli.Context, results *applyJSON) error {
	self, err := os.Executable()
	if err != nil {
		return exit(ExitInternal, "finding the fleetplan executable: %v", err)
	}
	file, _ := filepath.Abs(c.Args().First())
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("fleetplan-apply-%d.log", time.Now().UnixNano()))
	logFile, err := os.Create(logPath)
	if err != nil {
		return exit(ExitInternal, "creating the log file: %v", err)
	}
	defer logFile.Close()
	args := []string{"apply"}
	if c.Bool("auto-approve") {
		args = append(args, "-auto-approve")
	}
	if c.Bool("wait") {
		args = append(args, "-wait")
	}
	if v := c.String("audit-file"); v != "" {
		abs, _ := filepath.Abs(v)
		args = append(args, "-audit-file", abs)
	}
	if v := c.String("actor"); v != "" {
		args = append(args, "-actor", v)
	}
	for _, n := range c.StringSlice("notify") {
		args = append(args, "-notify", n)
	}
	args = append(args, "-sample-interval", c.Duration("sample-interval").String(), file)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return exit(ExitInternal, "starting the controller: %v", err)
	}
	if results.detached(cmd.Process.Pid, logPath) {
		return nil
	}
	fmt.Fprintf(c.App.Writer, "Controller started in the background (pid %d, log %s).\nFollow it with `fleetplan status -watch ROLLOUT`.\n", cmd.Process.Pid, logPath)
	return nil
}

// liveProgram is the live view of the rollout apply runs, when stdout is a
// terminal.
var liveProgram atomic.Pointer[tea.Program]

// runWithLiveView runs the controller while the live view shows it; leaving
// the view (q) stops the controller, whose state stays in Consul.
func runWithLiveView(ctx context.Context, cancel context.CancelFunc, ctl *scheduler.Controller, op *operator.Operator, app string) (*scheduler.Rollout, error) {
	m := newLiveModel(ctx, op.Loader(app), cancel)
	prog := tea.NewProgram(m)
	liveProgram.Store(prog)
	type result struct {
		r   *scheduler.Rollout
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := ctl.Run(ctx)
		done <- result{r, err}
		prog.Send(doneMsg{})
	}()
	_, _ = prog.Run()
	liveProgram.Store(nil)
	res := <-done
	return res.r, res.err
}

// lastReason is the reason of the run's latest decision.
func lastReason(r *scheduler.Rollout) string {
	if n := len(r.Decisions); n > 0 {
		return r.Decisions[n-1].Reason
	}
	return ""
}
