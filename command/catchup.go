package command

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	fphcl "github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "catch-up",
		Usage:     "switch the devices a finished rollout skipped because they were offline, through the same gate",
		ArgsUsage: "ROLLOUT",
		Description: `After a rollout finished, devices that were offline during it still run the old
version (or, after a rollback, may still hold the candidate). catch-up switches
each one that is back online and verifies it through the same per-device gate
(caught-up, or rolled back and quarantined when it fails); after a rollback it
takes such devices back. With -wait it keeps watching until every skipped device
is handled.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "wait", Usage: "keep going until every skipped device is handled"},
			&cli.StringFlag{Name: "policy", Usage: "the policy file (default: the one the run was applied from)"},
			jsonFlag(),
		},
		Action: catchUpAction,
	})
}

func catchUpAction(c *cli.Context) error {
	b, app, err := rolloutCommand(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	op := b.op
	r, err := op.LoadRun(ctx, app)
	if err != nil {
		return operatorError(err)
	}
	file := c.String("policy")
	if file == "" {
		file = r.PolicyFile
	}
	var p *scheduler.Policy
	if file != "" {
		if ps, files, diags := fphcl.ParseFilesWithSources(file); !diags.HasErrors() {
			operator.QualifyPolicies(ps)
			for _, cand := range ps {
				if cand.Name == app {
					p = cand
				}
			}
		} else {
			_ = fphcl.WriteDiagnostics(c.App.ErrWriter, files, diags, false)
		}
	}
	if p == nil {
		return exit(ExitUsage, "catch-up needs the policy of %q for its gate; pass it with -policy FILE", app)
	}
	if p.Release.Version != r.Version {
		return exit(ExitUsage, "the policy %s is for version %s but the last run of %q rolled out %s", file, p.Release.Version, app, r.Version)
	}
	lost, release, err := op.Lock(ctx, app, false)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	defer release()
	ctx, cancel := operator.WhileHeld(ctx, lost)
	defer cancel()
	actor := store.DefaultActor()
	sink, err := op.AuditSink("", actor)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ui := newProgress(progressWriter(c))
	ctl, stopWatch := op.Controller(operator.Run{Policy: p, WatchHealth: true, Actor: actor, Audit: sink, Lost: lost,
		OnEvent: func(e scheduler.Event) { ui.Event(e) }})
	defer stopWatch()
	res, err := ctl.CatchUp(ctx, c.Bool("wait"))
	if err != nil && !errors.Is(err, ctx.Err()) {
		return exit(ExitInternal, "catching up %s: %v", app, err)
	}
	left := 0
	if res != nil {
		for _, d := range res.Devices {
			if d.State == scheduler.DeviceSkippedOffline {
				left++
			}
		}
	}
	doc := actionDoc{Rollout: app, Action: "catch-up", Actor: actor, Result: "caught-up", Remaining: &left,
		Message: fmt.Sprintf("%d device(s) still to catch up.", left)}
	if res != nil {
		st := report.NewDeployState(res)
		doc.State = &st
	}
	return result(c, doc)
}
