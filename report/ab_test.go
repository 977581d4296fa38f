package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// abFixture is an a-b run of 2.0.0 against 1.0.0 on three classes of 8
// devices (4 per group); B has 20 % more latency on jetson only.
func abFixture(t *testing.T) *scheduler.Rollout {
	t.Helper()
	since := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var a, b []*scheduler.DeviceRecord
	samples := map[string]scheduler.GroupSample{}
	for _, class := range []string{"gateway", "jetson", "rpi"} {
		for i := 0; i < 8; i++ {
			id := fmt.Sprintf("%s-%d", class, i)
			rec := &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: id, Name: id, Class: class}}
			s := scheduler.GroupSample{Device: id, Version: "1.0.0", At: since.Add(10 * time.Minute), Requests: 600, Errors: 3, HasRequests: true, ProbeOK: 20, ProbeTotal: 20}
			factor := 1.0
			if i%2 == 1 {
				s.Version = "2.0.0"
				b = append(b, rec)
				if class == "jetson" {
					factor = 1.2
				}
			} else {
				a = append(a, rec)
			}
			for k := 0; k < 12; k++ {
				s.LatencyMS = append(s.LatencyMS, (60+float64((k*11+i*5)%30))*factor)
			}
			cpu, mem := 35.0+float64(i), 48.0
			s.CPUPercent, s.MemoryPercent = &cpu, &mem
			samples[id] = s
		}
	}
	cfg := &scheduler.AB{PromoteIf: scheduler.PromoteNotWorse, Confidence: 0.95, Tolerance: scheduler.ABTolerance{ErrorRate: 0.01, P95LatencyPercent: 10}}
	cmp := scheduler.CompareGroups(cfg, "1.0.0", "2.0.0", since, a, b, samples)
	cmp.Since, cmp.At, cmp.PromoteIf, cmp.Action = since, since.Add(11*time.Minute), cfg.PromoteIf, scheduler.ABActionRollback
	return &scheduler.Rollout{App: "edgeinfer", ID: "r1", Version: "2.0.0", PreviousVersion: "1.0.0", Strategy: scheduler.StrategyAB,
		Active: "blue", Candidate: "green", StartedAt: since, FinishedAt: since.Add(12 * time.Minute), Outcome: scheduler.OutcomeRolledBack, AB: &cmp}
}

func TestABReportMarkdown(t *testing.T) {
	r := abFixture(t)
	rep := Build(r)
	if rep.AB == nil {
		t.Fatal("no A/B section in the report of an a-b run")
	}
	var buf bytes.Buffer
	if err := WriteMarkdown(&buf, rep); err != nil {
		t.Fatal(err)
	}
	md := buf.String()
	t.Log("\n" + md)
	var jetsonLatency, rpiLatency, overall string
	for _, line := range strings.Split(md, "\n") {
		switch {
		case strings.HasPrefix(line, "| jetson | latency"):
			jetsonLatency = line
		case strings.HasPrefix(line, "| rpi | latency"):
			rpiLatency = line
		case strings.HasPrefix(line, "| **overall** | devices measured"):
			overall = line
		}
	}
	if !strings.Contains(jetsonLatency, "Mann-Whitney U") || !strings.Contains(jetsonLatency, "B worse beyond the tolerance") || !strings.Contains(jetsonLatency, "p95 +") {
		t.Errorf("jetson latency row %q", jetsonLatency)
	}
	if !strings.Contains(rpiLatency, "no detectable difference") {
		t.Errorf("rpi latency row %q", rpiLatency)
	}
	if !strings.Contains(overall, "12 of 12") {
		t.Errorf("overall row %q", overall)
	}
	for _, want := range []string{"**Verdict**: B worse beyond the tolerance", "latency in class jetson", "2.0.0 was rolled back (promote_if = not-worse)", "Cochran-Mantel-Haenszel", "On jetson devices, 2.0.0 answers more slowly than 1.0.0"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	// The p-value in the row is the test's.
	var jt scheduler.ABTest
	for _, g := range r.AB.Classes {
		if g.Class == "jetson" {
			jt = g.Tests[1]
		}
	}
	if jt.P >= 0.05 || !strings.Contains(jetsonLatency, "| "+scheduler.FormatP(jt.P)+" |") {
		t.Errorf("jetson p-value %g not shown in %q", jt.P, jetsonLatency)
	}

	buf.Reset()
	if err := WriteJSON(&buf, rep); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back.AB == nil || back.AB.Verdict != string(scheduler.ABWorse) || len(back.AB.Rows) != 20 {
		t.Errorf("JSON round trip: %v, %+v", err, back.AB)
	}
}

func TestABReportAbsentAndText(t *testing.T) {
	r := abFixture(t)
	var buf bytes.Buffer
	WriteABText(&buf, BuildAB(r))
	if out := buf.String(); !strings.Contains(out, "CLASS") || !strings.Contains(out, "jetson") || !strings.Contains(out, "B worse beyond the tolerance") {
		t.Errorf("text table:\n%s", out)
	}
	r.AB = nil
	if BuildAB(r) != nil {
		t.Error("a run without a comparison has an A/B section")
	}
	buf.Reset()
	_ = WriteMarkdown(&buf, Build(r))
	if strings.Contains(buf.String(), "A/B comparison") {
		t.Error("A/B section printed without a comparison")
	}
}
