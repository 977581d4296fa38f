package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/controller"
	"github.com/fleetplan/fleetplan/deploy"
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
		Description: `With a controller service running (` + "`fleetplan controller install`" + `), apply validates the
policy, submits each rollout to it (a request in Consul KV holding the policy
and the files it names) and follows it: q or Ctrl-C leaves the view and the
rollout goes on (follow it again with ` + "`fleetplan status -watch ROLLOUT`" + `); -detach
returns at once with the request ID.

Without a service (or with -local), apply runs the controller in this process,
in the foreground, until each rollout is done or rolled back. A rollout already
in progress is resumed where it was (a controller that was killed can simply be
started again). Only one controller works on a rollout at a time: a second
apply exits naming the holder (or waits, with -wait).

Exit codes (following a rollout to its end, either way): 0 done, 1 rolled back
(or halted after a rollback), 2 usage or validation errors, 3 other failures
(with the reason).`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "auto-approve", Usage: "approve the canary automatically once it passed its gate (recorded in the audit trail)"},
			&cli.BoolFlag{Name: "detach", Usage: "submit the rollout to the controller service and return (without a service: run the controller in the background); follow it with 'fleetplan status -watch ROLLOUT'"},
			&cli.BoolFlag{Name: "local", Usage: "run the controller in this process even when a controller service runs"},
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
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := logger(c)
	if c.Bool("local") && c.Bool("detach") {
		return detach(c, results)
	}
	op, err := operator.Connect(log)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	operator.QualifyPolicies(policies)
	if !c.Bool("local") {
		leader, found := findControllerService(ctx, op)
		if found {
			return submitAndFollow(ctx, c, op, c.Args().First(), policies, leader, results)
		}
		fmt.Fprintln(c.App.Writer, "No fleetplan controller service found: running the rollout in this process")
		if c.Bool("detach") {
			return detach(c, results)
		}
	}
	ui := newProgress(c.App.Writer)
	actor := c.String("actor")
	if actor == "" {
		actor = store.DefaultActor()
	}
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

	lease, err := op.Store.LockLease(ctx, p.Name, store.DefaultHolder(), c.Bool("wait"))
	if held, ok := store.IsLockHeld(err); ok {
		err = fmt.Errorf("rollout %q is being run by another controller (%s, since %s); follow it with `fleetplan status -watch %s`, or rerun with -wait",
			p.Name, held.Holder, held.Since.Format(time.RFC3339), p.Name)
	}
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "Error: %v\n", err)
		return ExitInternal
	}
	defer lease.ReleaseAll()
	lost := lease.Lost()
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
		Fence:          op.Store.Fence(lease),
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
		printAB(out, r)
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
	case r.Outcome == scheduler.OutcomeHeld:
		fmt.Fprintln(out, heldText(r))
		return ExitOK
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
	args := []string{"apply", "-local"}
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
	m.changes = rolloutChanges(op, app)
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

// findControllerService reports whether a controller service runs: a
// passing instance of the fleetplan-controller service in Consul, or a
// holder of the leadership lock. leader names the leader when known.
func findControllerService(ctx context.Context, op *operator.Operator) (leader string, found bool) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	holder, _, err := op.Store.Leader(qctx)
	if err == nil && holder != "" {
		return holder, true
	}
	entries, _, err := op.Consul.Health().Service(deploy.ControllerService, "", true, (&consulapi.QueryOptions{}).WithContext(qctx))
	if err == nil && len(entries) > 0 {
		return "", true
	}
	return "", false
}

// submitAndFollow submits each rollout of the policy file to the controller
// service and follows them (or returns at once with -detach).
func submitAndFollow(ctx context.Context, c *cli.Context, op *operator.Operator, file string, policies []*scheduler.Policy, leader string, results *applyJSON) error {
	out := c.App.Writer
	actor := c.String("actor")
	if actor == "" {
		actor = store.DefaultActor()
	}
	reqs, err := controller.NewRequests(file, policies, controller.SubmitOptions{
		AutoApprove:    c.Bool("auto-approve"),
		SampleInterval: c.Duration("sample-interval"),
		Actor:          actor,
		Namespace:      operator.Namespace(),
	})
	if err != nil {
		return exit(ExitUsage, "%v", err)
	}
	if len(c.StringSlice("notify")) > 0 {
		fmt.Fprintln(c.App.ErrWriter, "warning: -notify applies to rollouts run in this process; the controller service notifies as its policy says (use -local to notify from here)")
	}
	if c.String("audit-file") != "" {
		fmt.Fprintln(c.App.ErrWriter, "warning: -audit-file applies to rollouts run in this process; read the service's records with `fleetplan audit`")
	}
	sink, err := op.AuditSink("", actor)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	defer sink.Close()
	who := "the fleetplan controller service"
	if leader != "" {
		who += " (leader: " + leader + ")"
	}
	for i, req := range reqs {
		planSummary(ctx, c, op, policies[i])
		cur, err := submitOne(ctx, op, req)
		if err != nil {
			return exit(ExitInternal, "%v", err)
		}
		if cur != nil {
			reqs[i] = cur
			fmt.Fprintf(out, "==> Rollout %s: release %s is already submitted as request %s; following it\n", cur.App, cur.Version, cur.ID)
			continue
		}
		sink.Record(ctx, operator.Note(req.App, "", "apply", "submitted", fmt.Sprintf("request %s: release %s, policy %s", req.ID, req.Version, req.PolicyFile), actor))
		fmt.Fprintf(out, "==> Rollout %s: release %s (policy %s) submitted to %s as request %s\n", req.App, req.Version, req.PolicyFile, who, req.ID)
	}
	if c.Bool("detach") {
		for _, req := range reqs {
			fmt.Fprintf(out, "Follow it with `fleetplan status -watch %s`.\n", req.App)
		}
		results.submitted(reqs)
		return results.print()
	}
	code := ExitOK
	for i, req := range reqs {
		res, detached := followRequest(ctx, c, op, req)
		if detached {
			fmt.Fprintf(out, "\nDetached: rollout %s goes on in the controller service. Follow it again with `fleetplan status -watch %s`.\n", req.App, req.App)
			results.submitted(reqs[i:])
			return results.print()
		}
		results.add(ctx, op, policies[i], res)
		code = max(code, res)
	}
	if err := results.print(); err != nil {
		return err
	}
	if code != ExitOK {
		return cli.Exit("", code)
	}
	return nil
}

// planSummary prints the plan of a rollout about to be submitted in a few
// lines (`fleetplan plan` prints it whole): its stages and the pre-flight
// checklist. A plan that cannot be made is a warning: the service plans
// again in PREPARE and halts with the reason.
func planSummary(ctx context.Context, c *cli.Context, op *operator.Operator, p *scheduler.Policy) {
	out := c.App.Writer
	d, err := planOne(ctx, op, p)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "warning: could not plan %s here (%v); the controller service plans it again\n", p.Name, err)
		return
	}
	var stages []string
	for _, st := range d.Stages {
		stages = append(stages, fmt.Sprintf("%s %d", st.Name, len(st.Devices)))
	}
	fmt.Fprintf(out, "Plan of %s %s: %d deployable devices: %s", p.Name, p.Release.Version, d.Deployable, strings.Join(stages, ", "))
	if len(d.Excluded) > 0 {
		fmt.Fprintf(out, " (%d excluded)", len(d.Excluded))
	}
	fmt.Fprintln(out)
	if bad := d.Checklist.Unchecked(); len(bad) > 0 {
		fmt.Fprintf(out, "Pre-flight checklist: %d item(s) unchecked; the rollout will halt before touching a device (see `fleetplan plan %s`)\n", len(bad), p.File)
	}
}

// submitOne writes the request, unless the same release is already
// submitted and not finished: then it returns that request to follow.
func submitOne(ctx context.Context, op *operator.Operator, req *store.RolloutRequest) (*store.RolloutRequest, error) {
	state, err := op.Store.LoadState(ctx, req.App)
	if err != nil {
		return nil, err
	}
	if state != nil && !state.Finished() && state.Version != req.Version {
		ip := &scheduler.InProgressError{App: state.App, RunID: state.ID, Version: state.Version, Wanted: req.Version}
		return nil, fmt.Errorf("%v (`fleetplan rollback %s` takes it back)", ip, req.App)
	}
	cur, err := op.Store.LoadRequest(ctx, req.App)
	if err != nil {
		return nil, err
	}
	if cur != nil {
		if !cur.Status.Terminal() && cur.Version == req.Version {
			return cur, nil
		}
		req.Index = cur.Index
	}
	if err := op.Store.SubmitRequest(ctx, req); err != nil {
		if errors.Is(err, scheduler.ErrConflict) {
			return nil, fmt.Errorf("another apply of %s submitted a request at the same time; run apply again to follow it: %w", req.App, err)
		}
		return nil, err
	}
	return nil, nil
}

// followRequest follows a submitted rollout until it finishes or halts, in
// the live view on a terminal or with a line per change elsewhere, and
// returns apply's exit code; detached says the operator left (q, Ctrl-C,
// SIGTERM) while the rollout goes on.
func followRequest(ctx context.Context, c *cli.Context, op *operator.Operator, req *store.RolloutRequest) (code int, detached bool) {
	out, errw := c.App.Writer, c.App.ErrWriter
	var last string
	t := &requestTracker{op: op, req: req}
	if isTerminal(out) {
		detachedByKey := false
		m := newLiveModel(ctx, t.load, func() { detachedByKey = true })
		m.changes = rolloutChanges(op, req.App)
		m.leaveHint = fmt.Sprintf("q: detach (the rollout goes on in the controller service; follow it again with `fleetplan status -watch %s`)", req.App)
		prog := tea.NewProgram(m)
		go func() {
			for ctx.Err() == nil {
				if t.over() {
					prog.Send(doneMsg{})
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			prog.Quit()
		}()
		_, _ = prog.Run()
		if detachedByKey || ctx.Err() != nil {
			return ExitOK, true
		}
	} else {
		for !t.over() {
			if r, err := t.load(ctx); err == nil && r != nil {
				if line := summaryLine(r); line != last {
					fmt.Fprintf(out, "%s %s\n", time.Now().Format("15:04:05"), line)
					last = line
				}
			}
			select {
			case <-ctx.Done():
				return ExitOK, true
			case <-time.After(time.Second):
			}
		}
	}
	return t.result(out, errw), false
}

// requestTracker reads a submitted request and the run it started.
type requestTracker struct {
	op  *operator.Operator
	req *store.RolloutRequest

	// mu guards cur and state: the live view and the watch read them.
	mu    sync.Mutex
	cur   *store.RolloutRequest
	state *scheduler.Rollout
}

// load returns the request's run (nil until the service started it).
func (t *requestTracker) load(ctx context.Context) (*scheduler.Rollout, error) {
	cur, err := t.op.Store.LoadRequest(ctx, t.req.App)
	if err != nil {
		return nil, err
	}
	if cur == nil || cur.ID != t.req.ID || cur.Status == nil || cur.Status.RunID == "" {
		t.set(cur, nil)
		return nil, nil
	}
	r, err := t.op.Store.Load(ctx, t.req.App)
	if err != nil {
		return nil, err
	}
	if r == nil || r.ID != cur.Status.RunID {
		r = nil
	}
	t.set(cur, r)
	return r, nil
}

func (t *requestTracker) set(cur *store.RolloutRequest, r *scheduler.Rollout) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cur, t.state = cur, r
}

func (t *requestTracker) get() (*store.RolloutRequest, *scheduler.Rollout) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cur, t.state
}

// over reports whether the request is done with: its run finished or
// halted, it failed, or it was replaced.
func (t *requestTracker) over() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := t.load(ctx)
	if err != nil {
		return false
	}
	cur, _ := t.get()
	switch {
	case cur == nil || cur.ID != t.req.ID:
		return true
	case cur.Status.Terminal():
		return r == nil || r.Finished()
	case cur.Status != nil && cur.Status.State == store.RequestHalted:
		return true
	}
	return r != nil && r.Finished()
}

// result prints how the request ended and returns apply's exit code.
func (t *requestTracker) result(out, errw io.Writer) int {
	cur, r := t.get()
	switch {
	case cur == nil:
		fmt.Fprintf(errw, "Error: the request of %s was deleted\n", t.req.App)
		return ExitInternal
	case cur.ID != t.req.ID:
		fmt.Fprintf(errw, "Error: the request of %s was replaced by request %s (release %s)\n", t.req.App, cur.ID, cur.Version)
		return ExitInternal
	case cur.Status != nil && cur.Status.State == store.RequestFailed:
		fmt.Fprintf(errw, "Error: the controller service did not run request %s: %s\n", cur.ID, cur.Status.Reason)
		return ExitInternal
	case cur.Status != nil && cur.Status.State == store.RequestHalted:
		fmt.Fprintf(errw, "Halted: %s\n", cur.Status.Reason)
		if r != nil && r.RollbackScope != "" {
			return ExitRolledBack
		}
		return ExitInternal
	case r == nil:
		fmt.Fprintf(out, "No changes: %s\n", cur.Status.Reason)
		return ExitOK
	}
	newProgress(out).Summary(r)
	printAB(out, r)
	switch r.Outcome {
	case scheduler.OutcomeHeld:
		fmt.Fprintln(out, heldText(r))
		return ExitOK
	case scheduler.OutcomeRollbackIncomplete:
		fmt.Fprintf(errw, "==> Rollout %s was rolled back, but not every device could be verified on the old version: %s\n", r.App, lastReason(r))
		fmt.Fprintf(errw, "    Check those devices, then `fleetplan catch-up %s` verifies them again.\n", r.App)
		return ExitRolledBack
	case scheduler.OutcomeRolledBack:
		fmt.Fprintf(out, "==> Rollout %s was rolled back: %s\n", r.App, r.RollbackReason)
		return ExitRolledBack
	}
	fmt.Fprintf(out, "==> Rollout %s is done: %s %s runs in slot %s\n", r.App, r.App, r.Version, r.Candidate)
	return ExitOK
}
