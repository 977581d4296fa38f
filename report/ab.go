package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// ABReport is an a-b run's comparison of its groups, in words: group A
// runs the previous version, group B the release.
type ABReport struct {
	VersionA   string    `json:"version_a"`
	VersionB   string    `json:"version_b"`
	DevicesA   int       `json:"devices_a"`
	DevicesB   int       `json:"devices_b"`
	Since      time.Time `json:"since"`
	At         time.Time `json:"at"`
	Confidence float64   `json:"confidence"`
	PromoteIf  string    `json:"promote_if"`
	Verdict    string    `json:"verdict"`
	// Summary is the verdict and its reasons in one sentence; Action what
	// the rollout did, in words.
	Summary string `json:"summary"`
	Action  string `json:"action"`
	// InWords explains the findings in plain sentences.
	InWords []string `json:"in_words"`
	Rows    []ABRow  `json:"rows"`
	// Comparison is the data behind the rows.
	Comparison *scheduler.ABComparison `json:"comparison"`
}

// ABRow is one line of the comparison table: one metric in one class
// ("overall" combines the classes).
type ABRow struct {
	Class   string `json:"class"`
	Metric  string `json:"metric"`
	A       string `json:"a"`
	B       string `json:"b"`
	Change  string `json:"change"`
	Test    string `json:"test"`
	P       string `json:"p_value"`
	Verdict string `json:"verdict"`
}

// BuildAB is the comparison of an a-b run, nil when it has none (yet).
func BuildAB(r *scheduler.Rollout) *ABReport {
	c := r.AB
	if c == nil {
		return nil
	}
	rep := &ABReport{
		VersionA: orDash(r.PreviousVersion), VersionB: r.Version,
		DevicesA: c.Overall.A.Devices, DevicesB: c.Overall.B.Devices,
		Since: c.Since, At: c.At, Confidence: c.Confidence, PromoteIf: string(c.PromoteIf),
		Verdict: string(c.Verdict), Summary: c.Summary, Action: abActionText(r, c), Comparison: c,
	}
	for _, g := range c.Classes {
		rep.Rows = append(rep.Rows, abRows(g.Class, g)...)
	}
	rep.Rows = append(rep.Rows, abRows("overall", c.Overall)...)
	rep.InWords = inWords(rep.VersionA, rep.VersionB, c)
	return rep
}

// inWords says each finding in a sentence a product owner can read.
func inWords(va, vb string, c *scheduler.ABComparison) []string {
	var out []string
	alpha := 1 - c.Confidence
	say := func(where string, t scheduler.ABTest) {
		var what string
		switch t.Metric {
		case scheduler.ABMetricLatency:
			what = "answers more slowly"
			if t.Verdict == scheduler.ABBetter || t.Verdict == scheduler.ABBetterWithinTolerance {
				what = "answers faster"
			}
		case scheduler.ABMetricErrorRate:
			what = "fails more requests"
			if t.Verdict == scheduler.ABBetter || t.Verdict == scheduler.ABBetterWithinTolerance {
				what = "fails fewer requests"
			}
		default:
			what = "fails its functional probe more often"
			if t.Verdict == scheduler.ABBetter || t.Verdict == scheduler.ABBetterWithinTolerance {
				what = "fails its functional probe less often"
			}
		}
		judgement := map[scheduler.ABVerdict]string{
			scheduler.ABWorse:                 "more than the policy tolerates",
			scheduler.ABWithinTolerance:       "but within what the policy tolerates",
			scheduler.ABBetter:                "an improvement beyond the policy's tolerance",
			scheduler.ABBetterWithinTolerance: "an improvement, but smaller than the policy's tolerance (not enough for promote_if = \"better\")",
		}[t.Verdict]
		out = append(out, fmt.Sprintf("%s, %s %s than %s: %s, %s. If the versions performed the same, a difference this large would show up with probability %s (p-value, below the %s the policy's confidence allows), so it is unlikely to be chance.",
			where, vb, what, va, t.Detail, judgement, scheduler.FormatP(t.P), scheduler.FormatP(alpha)))
	}
	for _, g := range c.Classes {
		for _, t := range g.Tests {
			switch t.Verdict {
			case scheduler.ABWorse, scheduler.ABWithinTolerance, scheduler.ABBetter, scheduler.ABBetterWithinTolerance:
				say("On "+g.Class+" devices", t)
			}
		}
	}
	switch c.Verdict {
	case scheduler.ABNotEnoughData:
		out = append(out, "The devices did not report enough measurements to compare the versions; no conclusion can be drawn, in either direction.")
	case scheduler.ABNoDifference:
		out = append(out, fmt.Sprintf("No difference between %s and %s could be measured on any class at %.0f%% confidence.", va, vb, c.Confidence*100))
	}
	return out
}

func abActionText(r *scheduler.Rollout, c *scheduler.ABComparison) string {
	switch c.Action {
	case scheduler.ABActionPromote:
		return fmt.Sprintf("%s was promoted to the rest of the fleet (promote_if = %s)", r.Version, c.PromoteIf)
	case scheduler.ABActionRollback:
		return fmt.Sprintf("%s was rolled back (promote_if = %s)", r.Version, c.PromoteIf)
	case scheduler.ABActionHalt:
		return fmt.Sprintf("the rollout waits for an operator: promote_if = %s needs a verdict (resume compares again, rollback takes B back)", c.PromoteIf)
	}
	return fmt.Sprintf("both groups are kept as they are (promote_if = %s); %s stays the active version", c.PromoteIf, orDash(r.PreviousVersion))
}

func abRows(class string, g scheduler.ABGroupComparison) []ABRow {
	if class == "" {
		class = "(none)"
	}
	test := func(metric string) scheduler.ABTest {
		for _, t := range g.Tests {
			if t.Metric == metric {
				return t
			}
		}
		return scheduler.ABTest{Metric: metric, Verdict: scheduler.ABNotMeasured}
	}
	row := func(metric, a, b, change string, t scheduler.ABTest) ABRow {
		p := "-"
		if t.Test != "" {
			p = scheduler.FormatP(t.P)
		}
		name := t.Test
		if name == "" {
			name = "-"
		}
		return ABRow{Class: class, Metric: metric, A: a, B: b, Change: change, Test: name, P: p, Verdict: string(t.Verdict)}
	}
	et, lt, pt := test(scheduler.ABMetricErrorRate), test(scheduler.ABMetricLatency), test(scheduler.ABMetricProbe)
	rows := []ABRow{
		row("devices measured", fmt.Sprintf("%d of %d", g.A.Measured, g.A.Devices), fmt.Sprintf("%d of %d", g.B.Measured, g.B.Devices), "", scheduler.ABTest{}),
		row("error rate", rateText(g.A.ErrorRate, g.A.Errors, g.A.Requests, "requests"), rateText(g.B.ErrorRate, g.B.Errors, g.B.Requests, "requests"),
			pointsChange(g.A.ErrorRate, g.B.ErrorRate), et),
		row("latency p50 / p95", latText(g.A), latText(g.B), percentChange(g.A.P95LatencyMS, g.B.P95LatencyMS, "p95 "), lt),
		row("probe success", probeText(g.A), probeText(g.B), pointsChange(g.A.ProbeSuccess, g.B.ProbeSuccess), pt),
		row("CPU / memory (mean)", resText(g.A), resText(g.B), percentChange(g.A.CPUPercent, g.B.CPUPercent, "CPU "), scheduler.ABTest{}),
	}
	rows[0].Verdict = string(g.Verdict)
	rows[0].Test = "class verdict"
	if class == "overall" {
		rows[0].Test = "classes pooled (the Verdict line decides)"
	}
	rows[4].Verdict = "reported, not tested"
	return rows
}

func rateText(rate *float64, x, n float64, what string) string {
	if rate == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.2f%% (%g of %g %s)", *rate*100, x, n, what)
}

func latText(f scheduler.ABFigures) string {
	if f.P50LatencyMS == nil || f.P95LatencyMS == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.1f / %.1f ms (%d samples)", *f.P50LatencyMS, *f.P95LatencyMS, f.LatencySamples)
}

func probeText(f scheduler.ABFigures) string {
	if f.ProbeSuccess == nil {
		return "not measured"
	}
	return fmt.Sprintf("%.1f%% (%d of %d)", *f.ProbeSuccess*100, f.ProbeOK, f.ProbeTotal)
}

func resText(f scheduler.ABFigures) string {
	v := func(p *float64) string {
		if p == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.0f%%", *p)
	}
	if f.CPUPercent == nil && f.MemoryPercent == nil {
		return "not measured"
	}
	return v(f.CPUPercent) + " / " + v(f.MemoryPercent)
}

func pointsChange(a, b *float64) string {
	if a == nil || b == nil {
		return ""
	}
	return fmt.Sprintf("%+.2f points", (*b-*a)*100)
}

func percentChange(a, b *float64, label string) string {
	if a == nil || b == nil || *a == 0 {
		return ""
	}
	return fmt.Sprintf("%s%+.0f%%", label, (*b-*a) / *a * 100)
}

// WriteABMarkdown prints the comparison as a Markdown section.
func WriteABMarkdown(w io.Writer, ab *ABReport) error {
	if ab == nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n**A/B comparison**: group A runs %s on %d device(s), group B runs %s on %d device(s); measured from %s to %s, at %.0f%% confidence.\n\n",
		ab.VersionA, ab.DevicesA, ab.VersionB, ab.DevicesB, ab.Since.UTC().Format("15:04:05"), ab.At.UTC().Format("15:04:05 MST"), ab.Confidence*100)
	fmt.Fprintf(&b, "**Verdict**: %s. %s.\n\n", capitalizeFirst(ab.Summary), capitalizeFirst(ab.Action))
	for _, s := range ab.InWords {
		fmt.Fprintf(&b, "- %s\n", s)
	}
	if len(ab.InWords) > 0 {
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "| Class | Metric | A (%s) | B (%s) | Change | Test | p-value | Verdict |\n|---|---|---:|---:|---:|---|---:|---|\n", ab.VersionA, ab.VersionB)
	for _, r := range ab.Rows {
		class := r.Class
		if class == "overall" {
			class = "**overall**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", class, r.Metric, r.A, r.B, r.Change, r.Test, r.P, r.Verdict)
	}
	b.WriteString("\nPer class: two-proportion z-test for the error and probe-failure rates, Mann-Whitney U for latency samples (exact for small samples without ties). Overall: the same tests stratified by class (Cochran-Mantel-Haenszel, van Elteren), so that each class is compared with itself. " +
		"A metric is \"B worse beyond the tolerance\" when the test finds B higher at the confidence and B exceeds A by more than the policy's tolerance; B is judged worse when any class or the overall comparison is.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteABText prints the comparison as a terminal table (for status).
func WriteABText(w io.Writer, ab *ABReport) {
	if ab == nil {
		return
	}
	fmt.Fprintf(w, "\nA/B comparison: A = %s (%d devices), B = %s (%d devices), %.0f%% confidence\n", ab.VersionA, ab.DevicesA, ab.VersionB, ab.DevicesB, ab.Confidence*100)
	fmt.Fprintf(w, "Verdict: %s\n%s\n", ab.Summary, capitalizeFirst(ab.Action))
	for _, s := range ab.InWords {
		fmt.Fprintf(w, "  - %s\n", s)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nCLASS\tMETRIC\tA\tB\tCHANGE\tTEST\tP\tVERDICT")
	for _, r := range ab.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Class, r.Metric, r.A, r.B, orDash(r.Change), r.Test, r.P, r.Verdict)
	}
	tw.Flush()
}

func capitalizeFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
