package command

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/contract"
	fphcl "github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/scheduler"
	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/urfave/cli/v2"
)

func init() {
	register(&cli.Command{
		Name:      "plan",
		Usage:     "show the waves a policy would roll out, device by device, before anything moves",
		ArgsUsage: "FILE",
		Description: `Reads the device registry (synced with Nomad and Consul first), plans the canary
and the waves of each rollout in FILE, and asks Nomad what registering the
candidate slot job would change. Nothing is modified.

Exit codes, like 'nomad job plan': 0 no changes (the release already runs),
1 changes, 255 errors.

-json prints one object: {"rollouts": [PLAN...]} where PLAN has the stable
fields documented in the README ("fleetplan plan -json").`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print the plan as one JSON object"},
		},
		Action: planAction,
	})
}

// PlanDoc is one rollout's plan, as `plan -json` prints it.
type PlanDoc struct {
	Rollout       string                     `json:"rollout"`
	Version       string                     `json:"version"`
	PolicyFile    string                     `json:"policy_file"`
	Changes       bool                       `json:"changes"`
	ActiveSlot    string                     `json:"active_slot"`
	ActiveVersion string                     `json:"active_version"`
	CandidateSlot string                     `json:"candidate_slot"`
	CandidateJob  string                     `json:"candidate_job"`
	FleetTotal    int                        `json:"fleet_total"`
	Deployable    int                        `json:"deployable"`
	PerClassTotal map[string]int             `json:"per_class_total"`
	Stages        []scheduler.PlannedStage   `json:"stages"`
	Excluded      []scheduler.ExcludedDevice `json:"excluded"`
	Warnings      []string                   `json:"warnings"`
	// JobDiffType is Nomad's diff of the candidate slot job: Added,
	// Edited, None.
	JobDiffType string `json:"job_diff_type"`
	// JobModifyIndex is the candidate slot job's modify index (0 when it
	// does not exist yet).
	JobModifyIndex uint64              `json:"job_modify_index"`
	JobDiff        *nomadapi.JobDiff   `json:"job_diff,omitempty"`
	InProgress     *scheduler.Rollout  `json:"in_progress,omitempty"`
	Registry       map[string][]string `json:"registry_status"`
	// Checklist is the pre-flight checklist the rollout would be stopped
	// by (every item must be checked).
	Checklist scheduler.Checklist `json:"checklist"`
	// Strategy is the policy's strategy and StrategyRisk what it risks.
	Strategy     string `json:"strategy"`
	StrategyRisk string `json:"strategy_risk"`
}

func planAction(c *cli.Context) error {
	if c.NArg() != 1 {
		return exit(ExitPlanError, "plan takes exactly one policy FILE (see `fleetplan plan -h`)")
	}
	policies, files, diags := fphcl.ParseFilesWithSources(c.Args().First())
	if len(diags) > 0 {
		_ = fphcl.WriteDiagnostics(c.App.ErrWriter, files, diags, false)
	}
	if diags.HasErrors() {
		return exit(ExitPlanError, "the policy is not valid (check it with `fleetplan validate %s`)", c.Args().First())
	}
	op, err := operator.Connect(logger(c))
	if err != nil {
		return exit(ExitPlanError, "%v", err)
	}
	operator.QualifyPolicies(policies)
	var docs []*PlanDoc
	changes := false
	for _, p := range policies {
		doc, err := planOne(c.Context, op, p)
		if err != nil {
			return exit(ExitPlanError, "planning %s: %v", p.Name, err)
		}
		changes = changes || doc.Changes
		docs = append(docs, doc)
	}
	if c.Bool("json") {
		if err := printJSON(c, map[string]any{"rollouts": docs}); err != nil {
			return err
		}
	} else {
		for _, d := range docs {
			writePlan(c.App.Writer, d)
		}
	}
	if changes {
		return cli.Exit("", ExitChanges)
	}
	return nil
}

func planOne(ctx context.Context, op *operator.Operator, p *scheduler.Policy) (*PlanDoc, error) {
	reg := op.Registry()
	devices, err := reg.Devices(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("reading the registry: %w", err)
	}
	plan, err := scheduler.PlanRollout(p, devices)
	if err != nil {
		return nil, err
	}
	doc := &PlanDoc{
		Rollout: p.Name, Version: p.Release.Version, PolicyFile: p.File,
		Strategy: string(p.Strategy), StrategyRisk: scheduler.StrategyRisk(p.Strategy),
		FleetTotal: plan.FleetTotal, Deployable: plan.Deployable, PerClassTotal: plan.PerClassTotal,
		Stages: plan.Stages, Excluded: plan.Excluded, Warnings: plan.Warnings, Registry: map[string][]string{},
	}
	if doc.Excluded == nil {
		doc.Excluded = []scheduler.ExcludedDevice{}
	}
	if doc.Warnings == nil {
		doc.Warnings = []string{}
	}
	for _, d := range devices {
		doc.Registry[string(d.Status)] = append(doc.Registry[string(d.Status)], d.Name)
	}
	for _, names := range doc.Registry {
		sort.Strings(names)
	}
	active, err := op.Store.ActiveSlot(ctx, p.Name)
	if err != nil {
		return nil, fmt.Errorf("reading the active slot: %w", err)
	}
	if active != nil {
		doc.ActiveSlot, doc.ActiveVersion = active.Slot, active.Version
	}
	if cur, err := op.Store.LoadState(ctx, p.Name); err == nil && cur != nil && !cur.Finished() {
		doc.InProgress = cur
	}
	doc.CandidateSlot = scheduler.OtherSlot(doc.ActiveSlot)
	doc.CandidateJob = contract.SlotJobID(p.Name, doc.CandidateSlot)
	doc.Changes = doc.ActiveVersion != p.Release.Version

	base, err := jobs.ParseJobspec(ctx, op.Nomad, p.Release.Jobspec)
	if err != nil {
		return nil, err
	}
	watcher := checks.NewWatcher(op.Nomad, op.Consul, op.Log)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	doc.Checklist = scheduler.GatherChecklist(hctx, watcher, p, plan, nil, nil, doc.ActiveSlot, doc.ActiveVersion)
	cluster := jobs.WithTraffic(jobs.NewNomad(op.Nomad, p, base, op.Log), op.Consul)
	doc.Checklist = append(doc.Checklist, scheduler.StrategyChecklist(hctx, p, plan, cluster)...)
	cancel()
	watcher.Stop()
	job, err := jobs.Compile(base, p, doc.CandidateSlot, "plan")
	if err != nil {
		return nil, fmt.Errorf("compiling the candidate slot job: %w", err)
	}
	resp, _, err := op.Nomad.Jobs().PlanOpts(job, &nomadapi.PlanOptions{Diff: true}, (&nomadapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("asking Nomad to plan %s: %w", doc.CandidateJob, err)
	}
	doc.JobModifyIndex = resp.JobModifyIndex
	if resp.Diff != nil {
		doc.JobDiff = resp.Diff
		doc.JobDiffType = resp.Diff.Type
	}
	return doc, nil
}

func writePlan(out io.Writer, d *PlanDoc) {
	active := "none (first install)"
	if d.ActiveSlot != "" {
		active = fmt.Sprintf("%s in slot %s", d.ActiveVersion, d.ActiveSlot)
	}
	fmt.Fprintf(out, "Rollout %s: %s -> %s (candidate slot job %s)\n", d.Rollout, active, d.Version, d.CandidateJob)
	if !d.Changes {
		fmt.Fprintf(out, "No changes: %s already runs %s.\n\n", d.Rollout, d.Version)
	}
	if d.InProgress != nil {
		fmt.Fprintf(out, "Note: run %s of %s is in progress (%s); `fleetplan apply` resumes it.\n", d.InProgress.ID, d.InProgress.Version, d.InProgress.Phase)
	}
	fmt.Fprintf(out, "Fleet: %d devices (%d deployable)", d.FleetTotal, d.Deployable)
	var classes []string
	for c := range d.PerClassTotal {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	var parts []string
	for _, c := range classes {
		parts = append(parts, fmt.Sprintf("%s %d", c, d.PerClassTotal[c]))
	}
	fmt.Fprintf(out, ": %s\n", strings.Join(parts, ", "))
	if d.Strategy != "" {
		fmt.Fprintf(out, "Strategy: %s (%s)\n", d.Strategy, d.StrategyRisk)
	}
	fmt.Fprintln(out)

	if len(d.Checklist) > 0 {
		fmt.Fprintln(out, "Pre-flight checklist:")
		writeChecklist(out, d.Checklist)
		if bad := d.Checklist.Unchecked(); len(bad) > 0 {
			fmt.Fprintf(out, "STOP: %d item(s) unchecked; apply would halt before touching a device.\n", len(bad))
		}
		fmt.Fprintln(out)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	header := "STAGE\tCUMULATIVE\tNEW DEVICES"
	for _, c := range classes {
		header += "\t" + strings.ToUpper(c)
	}
	fmt.Fprintln(tw, header+"\tOFFLINE\tSOAK")
	for _, st := range d.Stages {
		row := fmt.Sprintf("%s\t%.0f%% (%d)\t%d", st.Name, st.Percent, st.CumulativeDevices, len(st.Devices))
		for _, c := range classes {
			row += fmt.Sprintf("\t%d", st.PerClass[c])
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\n", row, st.Offline, st.Soak.Round(time.Second))
	}
	fmt.Fprintf(tw, "excluded\t-\t%d\n", len(d.Excluded))
	tw.Flush()

	if len(d.Stages) > 0 {
		fmt.Fprintf(out, "\nCanary devices:\n")
		for _, dev := range d.Stages[0].Devices {
			note := ""
			if dev.Offline {
				note = "  (offline: will be skipped)"
			}
			fmt.Fprintf(out, "  %-14s %-9s %s%s\n", dev.Name, dev.Class, dev.ID, note)
		}
	}
	for _, e := range d.Excluded {
		fmt.Fprintf(out, "Excluded: %s (%s): %s\n", e.Name, e.Class, e.Reason)
	}
	for _, w := range d.Warnings {
		fmt.Fprintf(out, "Warning: %s\n", w)
	}
	fmt.Fprintf(out, "\nNomad plan of %s: %s (job modify index %d)\n", d.CandidateJob, orDash(d.JobDiffType), d.JobModifyIndex)
	if d.JobDiff != nil && d.JobDiff.Type != "None" {
		writeJobDiff(out, d.JobDiff)
	}
	fmt.Fprintln(out)
}

func writeJobDiff(out io.Writer, diff *nomadapi.JobDiff) {
	mark := map[string]string{"Added": "+", "Deleted": "-", "Edited": "+/-", "None": " "}
	for _, f := range diff.Fields {
		if f.Type != "None" {
			fmt.Fprintf(out, "  %s %s: %q => %q\n", mark[f.Type], f.Name, f.Old, f.New)
		}
	}
	for _, g := range diff.TaskGroups {
		if g.Type == "None" {
			continue
		}
		fmt.Fprintf(out, "  %s group %q\n", mark[g.Type], g.Name)
		for _, t := range g.Tasks {
			if t.Type == "None" {
				continue
			}
			fmt.Fprintf(out, "    %s task %q\n", mark[t.Type], t.Name)
			for _, f := range t.Fields {
				if f.Type != "None" {
					fmt.Fprintf(out, "      %s %s: %q => %q\n", mark[f.Type], f.Name, f.Old, f.New)
				}
			}
			for _, o := range t.Objects {
				if o.Type == "None" {
					continue
				}
				for _, f := range o.Fields {
					if f.Type != "None" {
						fmt.Fprintf(out, "      %s %s.%s: %q => %q\n", mark[f.Type], o.Name, f.Name, f.Old, f.New)
					}
				}
			}
		}
	}
}
