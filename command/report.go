package command

import (
	"fmt"
	"time"

	"github.com/fleetplan/fleetplan/audit"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "report",
		Usage:     "print the deployment report of a rollout run",
		ArgsUsage: "ROLLOUT",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "markdown", Usage: "`FORMAT` of the report: markdown or json"},
			&cli.StringFlag{Name: "run", Usage: "a past run's `ID` (default: the latest run); 'fleetplan report -runs ROLLOUT' lists them"},
			&cli.BoolFlag{Name: "runs", Usage: "list the runs of the rollout"},
		},
		Action: reportAction,
	})
	register(&cli.Command{
		Name:  "audit",
		Usage: "print the audit trail: who did what to which device, when, and what happened",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array of records"},
			&cli.StringFlag{Name: "rollout", Usage: "only this rollout"},
			&cli.StringFlag{Name: "device", Usage: "only this device (node name)"},
			&cli.StringFlag{Name: "since", Usage: "only records since a time (RFC 3339) or a duration ago (e.g. 2h)"},
		},
		Action: auditAction,
	})
}

func reportAction(c *cli.Context) error {
	b, err := initCommand(c, withExactArgs(1, "ROLLOUT name"))
	if err != nil {
		return err
	}
	app, format := operator.RolloutName(b.args[0]), c.String("format")
	if format != "markdown" && format != "json" {
		return exit(ExitUsage, "unknown -format %q: use markdown or json", format)
	}
	if err := b.connect(); err != nil {
		return err
	}
	if c.Bool("runs") {
		runs, err := b.op.Runs(c.Context, app)
		if err != nil {
			return exit(ExitInternal, "%v", err)
		}
		for _, r := range runs {
			fmt.Fprintf(c.App.Writer, "%s\t%s\t%s\t%s\n", r.ID, r.Version, orDash(string(r.Outcome)), r.StartedAt.Format(time.RFC3339))
		}
		return nil
	}
	var r *scheduler.Rollout
	if id := c.String("run"); id != "" {
		r, err = b.op.LoadRunByID(c.Context, app, id)
	} else {
		r, err = b.op.LoadRun(c.Context, app)
	}
	if err != nil {
		return operatorError(err)
	}
	rep := report.Build(r)
	if format == "json" {
		return report.WriteJSON(c.App.Writer, rep)
	}
	return report.WriteMarkdown(c.App.Writer, rep)
}

func auditAction(c *cli.Context) error {
	q := audit.Query{Device: c.String("device")}
	if r := c.String("rollout"); r != "" {
		q.Rollout = operator.RolloutName(r)
	}
	if s := c.String("since"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			q.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, s); err == nil {
			q.Since = t
		} else {
			return exit(ExitUsage, "-since %q is neither an RFC 3339 time (2026-11-26T19:00:00Z) nor a duration (2h)", s)
		}
	}
	b, err := initCommand(c, withNoArgs(), withConnect())
	if err != nil {
		return err
	}
	recs, err := b.op.AuditRecords(c.Context, q)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	if c.Bool("json") {
		if recs == nil {
			recs = []audit.Record{}
		}
		return printJSON(c, recs)
	}
	for _, r := range recs {
		where := r.Phase
		if r.Wave != "" {
			where += "/" + r.Wave
		}
		dev := r.Device
		if dev == "" {
			dev = "-"
		}
		fmt.Fprintf(c.App.Writer, "%s  %-10s %-26s %-10s %-22s %-16s %s  (%s)\n", r.Time.Format("2006-01-02T15:04:05.000Z07:00"), r.Rollout, where, dev, r.Action, r.Outcome, r.Detail, r.Actor)
	}
	return nil
}
