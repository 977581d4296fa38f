// Package report renders a rollout run as the field's deployment report, in
// Markdown or JSON.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Report is the JSON form of a deployment report.
type Report struct {
	Artifact        string      `json:"artifact"`
	Version         string      `json:"version"`
	PreviousVersion string      `json:"previous_version,omitempty"`
	RunID           string      `json:"run_id"`
	Strategy        string      `json:"strategy"`
	Outcome         string      `json:"outcome"`
	Phase           string      `json:"phase"`
	Start           time.Time   `json:"start"`
	End             *time.Time  `json:"end,omitempty"`
	DurationSeconds float64     `json:"duration_seconds"`
	Slots           Slots       `json:"slots"`
	FleetTotal      int         `json:"fleet_total"`
	Status          []StatusRow `json:"status"`
	Waves           []WaveRow   `json:"waves"`
	HealthDelta     []DeltaRow  `json:"health_delta"`
	FailureAnalysis string      `json:"failure_analysis,omitempty"`
	// Analysis is the failure analysis as data (its kind, classes, layer).
	Analysis    *scheduler.FailureAnalysis `json:"analysis,omitempty"`
	Approvals   []Approval                 `json:"approvals"`
	CatchUp     []DeviceRef                `json:"catch_up"`
	Quarantined []DeviceRef                `json:"quarantined"`
	// Restores are the verified restore times of a rollback, per device:
	// from the device's switch back to its old slot running and passing
	// its checks.
	Restores []Restore `json:"restores,omitempty"`
	// AB is an a-b run's comparison of its groups (ab.go).
	AB        *ABReport            `json:"ab,omitempty"`
	Excluded  []DeviceRef          `json:"excluded"`
	Decisions []scheduler.Decision `json:"decisions"`
	// RollbackTimes are the run's rollback times from its trigger.
	RollbackTimes *RollbackTimes `json:"rollback_times,omitempty"`
}

// RollbackTimes measure a rollback from its trigger: to the traffic back
// on the old slot (blue-green; 0 when not measured) and to the candidate
// stopped on every reachable device it covered.
type RollbackTimes struct {
	TrafficBackSeconds      float64 `json:"traffic_back_seconds,omitempty"`
	CandidateStoppedSeconds float64 `json:"candidate_stopped_seconds,omitempty"`
	Devices                 int     `json:"devices"`
}

// Slots names the slot colours of the run.
type Slots struct {
	Active    string `json:"active"`
	Candidate string `json:"candidate"`
}

// StatusRow is one line of the status table.
type StatusRow struct {
	Status  string  `json:"status"`
	Count   int     `json:"count"`
	Percent float64 `json:"percent"`
}

// WaveRow is one line of the wave table.
type WaveRow struct {
	Wave    string  `json:"wave"`
	Percent float64 `json:"percent"`
	Devices int     `json:"devices"`
	Failed  int     `json:"failed"`
	Offline int     `json:"offline"`
	Soak    string  `json:"soak"`
	Verdict string  `json:"verdict"`
}

// DeltaRow compares a metric after the switch with before it.
type DeltaRow struct {
	Metric  string   `json:"metric"`
	Unit    string   `json:"unit"`
	Before  *float64 `json:"before"`
	After   *float64 `json:"after"`
	Devices int      `json:"devices"`
}

// Approval is who let the rollout leave the canary.
type Approval struct {
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	Saw     string    `json:"saw"`
	Message string    `json:"message,omitempty"`
}

// Restore is one device's verified rollback.
type Restore struct {
	Device  string  `json:"device"`
	Class   string  `json:"class"`
	Seconds float64 `json:"seconds"`
}

// DeviceRef names a device in the report.
type DeviceRef struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Class  string `json:"class"`
	Reason string `json:"reason,omitempty"`
}

// Build computes the report of a run.
func Build(r *scheduler.Rollout) *Report {
	rep := &Report{
		Artifact: r.App, Version: r.Version, PreviousVersion: r.PreviousVersion, RunID: r.ID,
		Strategy: string(r.Strategy), Outcome: string(r.Outcome), Phase: string(r.Phase),
		Start: r.StartedAt, Slots: Slots{Active: r.Active, Candidate: r.Candidate},
		Approvals: []Approval{}, CatchUp: []DeviceRef{}, Quarantined: []DeviceRef{}, Excluded: []DeviceRef{},
		Decisions: r.Decisions,
	}
	if rep.Outcome == "" {
		rep.Outcome = "in progress"
	}
	end := r.UpdatedAt
	if !r.FinishedAt.IsZero() {
		end = r.FinishedAt
		rep.End = &end
	}
	rep.DurationSeconds = end.Sub(r.StartedAt).Seconds()

	devs := r.SortedDevices()
	for _, d := range devs {
		if d.Stage < 0 {
			continue
		}
		switch d.State {
		case scheduler.DeviceSkippedOffline:
			rep.CatchUp = append(rep.CatchUp, DeviceRef{Name: d.Name, ID: d.ID, Class: d.Class, Reason: d.Reason})
		case scheduler.DeviceQuarantined:
			rep.Quarantined = append(rep.Quarantined, DeviceRef{Name: d.Name, ID: d.ID, Class: d.Class, Reason: d.Reason})
		}
	}
	t := r.FleetTally()
	healthy, skipped, quarantined, rolledBack := t.Healthy, t.Offline, t.Quarantined, t.RolledBack
	other := t.Total - healthy - skipped - quarantined - rolledBack
	for _, e := range r.Excluded {
		rep.Excluded = append(rep.Excluded, DeviceRef{Name: e.Name, ID: e.ID, Class: e.Class, Reason: e.Reason})
	}
	total := healthy + skipped + quarantined + rolledBack + other + len(r.Excluded)
	rep.FleetTotal = total
	pct := func(n int) float64 {
		if total == 0 {
			return 0
		}
		return float64(n) * 100 / float64(total)
	}
	rep.Status = []StatusRow{
		{"Deployed (healthy)", healthy, pct(healthy)},
		{"Skipped (unreachable)", skipped, pct(skipped)},
		{"Quarantined (failed)", quarantined, pct(quarantined)},
	}
	if rolledBack > 0 {
		rep.Status = append(rep.Status, StatusRow{"Rolled back", rolledBack, pct(rolledBack)})
	}
	if other > 0 && r.Outcome == scheduler.OutcomeHeld {
		rep.Status = append(rep.Status, StatusRow{"Kept on the previous version (A/B group A)", other, pct(other)})
	} else if other > 0 {
		rep.Status = append(rep.Status, StatusRow{"Not yet deployed", other, pct(other)})
	}
	if len(r.Excluded) > 0 {
		rep.Status = append(rep.Status, StatusRow{"Excluded (registry)", len(r.Excluded), pct(len(r.Excluded))})
	}
	for i, st := range r.Stages {
		name := "Canary"
		if !st.Canary {
			name = fmt.Sprintf("Wave %d", i)
		}
		if st.Name == scheduler.ABGroupAStage {
			name = "Group A (promotion)"
		}
		v := st.Verdict
		if v == "" {
			v = "not run"
			if i == r.Stage && !r.Finished() {
				v = "in progress"
			}
		}
		rep.Waves = append(rep.Waves, WaveRow{Wave: name, Percent: st.Percent, Devices: st.Devices, Failed: st.Failed, Offline: st.Offline, Soak: st.Soak.String(), Verdict: v})
	}
	rep.HealthDelta = delta(devs)
	for _, d := range devs {
		if d.State == scheduler.DeviceRolledBack && !d.RestoredAt.IsZero() && !d.RollbackAt.IsZero() {
			rep.Restores = append(rep.Restores, Restore{Device: d.Name, Class: d.Class, Seconds: d.RestoredAt.Sub(d.RollbackAt).Seconds()})
		}
	}
	if t := r.RollbackTimes; t != nil && (!t.TrafficBackAt.IsZero() || !t.CandidateStoppedAt.IsZero()) {
		rep.RollbackTimes = &RollbackTimes{TrafficBackSeconds: t.TrafficBack().Seconds(), CandidateStoppedSeconds: t.CandidateStopped().Seconds(), Devices: t.Devices}
	}
	if a := r.LastAnalysis(); a != nil {
		rep.Analysis = a
		rep.FailureAnalysis = a.String()
	}
	rep.AB = BuildAB(r)
	if a := r.Approval; a != nil {
		rep.Approvals = append(rep.Approvals, Approval{Actor: a.Actor, Time: a.Time, Saw: a.Saw, Message: a.Message})
	}
	return rep
}

// delta averages the device agent's metrics over the devices that have both
// a baseline and an after sample.
func delta(devs []*scheduler.DeviceRecord) []DeltaRow {
	type acc struct{ before, after float64 }
	rows := []struct {
		name, unit string
		get        func(*scheduler.Metrics) float64
	}{
		{"Error rate", "%", func(m *scheduler.Metrics) float64 { return m.ErrorRate * 100 }},
		{"P95 latency", "ms", func(m *scheduler.Metrics) float64 { return m.P95LatencyMS }},
		{"CPU", "%", func(m *scheduler.Metrics) float64 { return m.CPUPercent }},
		{"Memory", "MB", func(m *scheduler.Metrics) float64 { return m.MemoryMB }},
	}
	out := make([]DeltaRow, 0, len(rows))
	for _, row := range rows {
		var a acc
		n := 0
		for _, d := range devs {
			if d.Baseline == nil || d.After == nil {
				continue
			}
			a.before += row.get(d.Baseline)
			a.after += row.get(d.After)
			n++
		}
		dr := DeltaRow{Metric: row.name, Unit: row.unit, Devices: n}
		if n > 0 {
			b, af := a.before/float64(n), a.after/float64(n)
			dr.Before, dr.After = &b, &af
		}
		out = append(out, dr)
	}
	return out
}

// WriteJSON prints the report as indented JSON.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteMarkdown prints the report in the field's Markdown format.
func WriteMarkdown(w io.Writer, rep *Report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## Fleet Deployment Report: %s v%s\n\n", rep.Artifact, rep.Version)
	end := "(running)"
	if rep.End != nil {
		end = rep.End.UTC().Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintf(&b, "**Strategy**: %s | **Duration**: %s to %s (%s)\n\n", rep.Strategy, rep.Start.UTC().Format("2006-01-02 15:04:05 MST"), end,
		(time.Duration(rep.DurationSeconds * float64(time.Second))).Round(time.Second))
	prev := rep.PreviousVersion
	if prev == "" {
		prev = "none (first install)"
	}
	active := rep.Slots.Active
	if active == "" {
		active = "(none)"
	}
	fmt.Fprintf(&b, "**Outcome**: %s | **Previous version**: %s | **Slots**: %s -> %s | **Run**: %s\n\n", rep.Outcome, prev, active, rep.Slots.Candidate, rep.RunID)

	b.WriteString("| Status | Count | % |\n|---|---:|---:|\n")
	for _, s := range rep.Status {
		fmt.Fprintf(&b, "| %s | %d | %.1f%% |\n", s.Status, s.Count, s.Percent)
	}
	b.WriteString("\n| Wave | Devices | Failed | Soak | Verdict |\n|---|---:|---:|---|---|\n")
	for _, wv := range rep.Waves {
		fmt.Fprintf(&b, "| %s (%.0f%%) | %d | %d | %s | %s |\n", wv.Wave, wv.Percent, wv.Devices, wv.Failed, wv.Soak, wv.Verdict)
	}
	b.WriteString("\n**Health Delta**\n\n| Metric | Before | After | Change |\n|---|---:|---:|---:|\n")
	for _, d := range rep.HealthDelta {
		if d.Before == nil {
			fmt.Fprintf(&b, "| %s | n/a | n/a | no device measured both before and after its switch |\n", d.Metric)
			continue
		}
		change := *d.After - *d.Before
		rel := ""
		if *d.Before != 0 {
			rel = fmt.Sprintf(" (%+.1f%%)", change*100 / *d.Before)
		}
		fmt.Fprintf(&b, "| %s | %.2f %s | %.2f %s | %+.2f %s%s |\n", d.Metric, *d.Before, d.Unit, *d.After, d.Unit, change, d.Unit, rel)
	}
	if err := WriteABMarkdown(&b, rep.AB); err != nil {
		return err
	}
	if rep.FailureAnalysis != "" {
		fmt.Fprintf(&b, "\n**Failure Analysis**: %s\n", rep.FailureAnalysis)
	}
	if t := rep.RollbackTimes; t != nil {
		b.WriteString("\n**Rollback times** (from the trigger): ")
		if t.TrafficBackSeconds > 0 {
			fmt.Fprintf(&b, "traffic back on slot %s after %.1f s; ", active, t.TrafficBackSeconds)
		}
		fmt.Fprintf(&b, "candidate stopped after %.1f s (%d device(s))\n", t.CandidateStoppedSeconds, t.Devices)
	}
	if len(rep.Restores) > 0 {
		b.WriteString("\n**Rollback verification** (old slot running and passing its checks)\n\n| Device | Class | Restored after |\n|---|---|---|\n")
		for _, rs := range rep.Restores {
			fmt.Fprintf(&b, "| %s | %s | %.1f s |\n", rs.Device, rs.Class, rs.Seconds)
		}
	}
	b.WriteString("\n**Approvals**\n\n")
	if len(rep.Approvals) == 0 {
		b.WriteString("None (the canary was not approved).\n")
	}
	for _, a := range rep.Approvals {
		msg := ""
		if a.Message != "" {
			msg = fmt.Sprintf(" — %q", a.Message)
		}
		fmt.Fprintf(&b, "- %s at %s; saw: %s%s\n", a.Actor, a.Time.UTC().Format("2006-01-02 15:04:05 MST"), a.Saw, msg)
	}
	if len(rep.Quarantined) > 0 {
		b.WriteString("\n**Quarantined**\n\n")
		for _, d := range rep.Quarantined {
			fmt.Fprintf(&b, "- %s (%s): %s\n", d.Name, d.Class, d.Reason)
		}
	}
	b.WriteString("\n**Devices to catch up**\n\n")
	if len(rep.CatchUp) == 0 {
		b.WriteString("None.\n")
	}
	for _, d := range rep.CatchUp {
		fmt.Fprintf(&b, "- %s (%s): %s\n", d.Name, d.Class, d.Reason)
	}
	if len(rep.Excluded) > 0 {
		b.WriteString("\n**Excluded by the registry**\n\n")
		for _, d := range rep.Excluded {
			fmt.Fprintf(&b, "- %s (%s): %s\n", d.Name, d.Class, d.Reason)
		}
	}
	if len(rep.Decisions) > 0 {
		b.WriteString("\n**Decisions**\n\n")
		for _, d := range rep.Decisions {
			fmt.Fprintf(&b, "- %s `%s` %s\n", d.Time.UTC().Format("15:04:05"), d.Kind, d.Reason)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
