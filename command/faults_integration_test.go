//go:build integration

package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// faultCase is one fault mode of the demo application and what fleetplan
// must make of it.
type faultCase struct {
	name string
	env  map[string]string
	// maxLatency is the functional block's max_latency ("" is 250ms).
	maxLatency string
	// layer is the layer whose failing verdict must stop the canary
	// (0: no device may fail; trend detection must stop it).
	layer int
	// want are texts the failing verdict must contain (one of each
	// group, groups separated by "|" alternatives).
	want []string
	// trend: the canary soak is extended once, then rolled back for
	// gradual degradation.
	trend bool
}

// TestIntegrationFaults rolls out, for each fault mode of the demo
// application, a good 1.0.0 and then a 2.0.0 with the fault, and checks
// that the right health layer catches it at the canary and fleetplan rolls
// it back by itself, then that a device failing alone inside the failure
// budget is quarantined while the rollout goes on. It logs, per fault,
//
//	FAULT <name>: switched->failed=<d> failed->rollback=<d> rollback->restored=<d>
//
// the time from the device's switch to its first failing verdict (for a
// trend: to the soak extension), from there to the rollback decision (the
// quarantine for one device), and from there until every device that left
// the stable slot runs it again with all its checks passing.
func TestIntegrationFaults(t *testing.T) {
	c := testcluster.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 14*time.Minute)
	defer cancel()
	installAgent(t, ctx, c)
	devices := deployableDevices(t, ctx, c)
	if len(devices) < 5 {
		t.Fatalf("only %d deployable devices (%v); the test needs a canary of 3 and later waves", len(devices), devices)
	}

	cases := []faultCase{
		{name: "crash", env: map[string]string{"EDGEINFER_FAULT_CRASH": "1"},
			// The restarts pass max_restarts (1) about 4 s after the
			// switch, usually within grace; on a busy host the
			// application check's failure may come first, and names the
			// restarts too.
			layer: 3, want: []string{"crash loop|the allocation restarted"}},
		{name: "unhealthy", env: map[string]string{"EDGEINFER_FAULT_UNHEALTHY_AFTER": "2s"},
			layer: 3, want: []string{"unhealthy"}},
		{name: "wrong-output", env: map[string]string{"EDGEINFER_FAULT_WRONG_OUTPUT": "1"},
			layer: 4, want: []string{`label = "dog", expected "cat"`}},
		{name: "slow", env: map[string]string{"EDGEINFER_FAULT_SLOW": "400ms"}, maxLatency: "250ms",
			layer: 4, want: []string{"max 250ms exceeded|p95 latency"}},
		// 1 MiB/s on a baseline of about 8 MB: the memory doubles after
		// about 8 s of uptime, within the 12 s canary soak (and stays
		// under the task's 32 MB through the extended soak).
		{name: "leak", env: map[string]string{"EDGEINFER_FAULT_LEAK_MB_PER_S": "1"},
			trend: true},
	}
	for _, fc := range cases {
		if !t.Run(fc.name, func(t *testing.T) { testFault(t, ctx, c, devices, fc) }) && ctx.Err() != nil {
			return
		}
	}
	t.Run("quarantine", func(t *testing.T) { testQuarantine(t, ctx, c, devices) })
}

var layerPrefix = regexp.MustCompile(`^L(\d): `)

func testFault(t *testing.T, ctx context.Context, c *testcluster.Cluster, devices []string, fc faultCase) {
	app := "ft-" + fc.name
	cleanup(t, c, app)
	dir := t.TempDir()

	v1 := writePolicy(t, dir, policySpec{App: app, Version: "1.0.0", CanarySoak: "3s", WaveSoak: "2s", MaxLatency: fc.maxLatency})
	if res := fleetplan(t, ctx, "apply", "-auto-approve", v1); res.code != 0 {
		t.Fatalf("installing 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitSettled(t, c, devices, app, "blue", "1.0.0")

	v2 := writePolicy(t, dir, policySpec{App: app, Version: "2.0.0", Env: fc.env, MaxLatency: fc.maxLatency})
	watch := watchRestore(c, devices, app, "blue", "1.0.0")
	res := fleetplan(t, ctx, "apply", "-auto-approve", v2)
	left, restored := watch.wait(t, 90*time.Second)
	if res.code != 1 {
		t.Fatalf("rolling out 2.0.0 with fault %s exited %d, want 1 (rolled back)\n%s\n%s", fc.name, res.code, res.stdout, res.stderr)
	}
	waitSettled(t, c, devices, app, "blue", "1.0.0")

	st := statusOf(t, ctx, app)
	if st.State.Outcome != "rolled-back" {
		t.Errorf("outcome %q, want rolled-back", st.State.Outcome)
	}
	recs := auditTrail(t, ctx, app, st.Rollout.ID)
	if len(recs) == 0 {
		t.Fatalf("no audit record of run %s", st.Rollout.ID)
	}
	start := recs[0].Time
	rollback, ok := find(recs, start, func(r auditRec) bool { return r.Action == "decision:rollback" })
	if !ok {
		t.Fatalf("no rollback decision in the audit trail:\n%s", dumpAudit(recs))
	}
	for _, r := range recs {
		if r.Action == "decision:approved" || r.Action == "decision:gate-passed" {
			t.Errorf("the faulty canary was let through: %s %s", r.Action, r.Detail)
		}
	}

	var failedAt time.Time
	var device string
	if fc.trend {
		// The device agent judges the memory on the device (edge-local
		// verdicts): against the device's own pre-switch baseline (twice
		// it) or its trend projected past that limit, its layer 3 check
		// turns critical naming the memory's degradation, and the
		// controller rolls back on that verdict.
		failed, ok := find(recs, start, func(r auditRec) bool { return r.Action == "verify" && r.Outcome == "failed" })
		if !ok {
			t.Fatalf("no device failed its verification on the leak:\n%s", dumpAudit(recs))
		}
		failedAt, device = failed.Time, failed.Device
		memory := regexp.MustCompile(`memory (on \S+ grows [0-9.e+-]+ MB/s|[0-9.]+ MB, at least twice)`)
		if !strings.Contains(failed.Detail, "degradation") || !memory.MatchString(failed.Detail) {
			t.Errorf("first failing verdict %q, want the memory's degradation (twice the baseline, or its growth)", failed.Detail)
		}
		if m := layerPrefix.FindStringSubmatch(failed.Detail); m == nil || m[1] != "3" {
			t.Errorf("first failing verdict %q, want layer 3", failed.Detail)
		}
		if failedAt.After(rollback.Time) {
			t.Errorf("rollback decided at %s before the first failure at %s", rollback.Time, failedAt)
		}
		t.Logf("%s: %s: %s", fc.name, failed.Device, failed.Detail)
	} else {
		failed, ok := find(recs, start, func(r auditRec) bool { return r.Action == "verify" && r.Outcome == "failed" })
		if !ok {
			t.Fatalf("no device failed its verification:\n%s", dumpAudit(recs))
		}
		failedAt, device = failed.Time, failed.Device
		m := layerPrefix.FindStringSubmatch(failed.Detail)
		if m == nil || m[1] != fmt.Sprint(fc.layer) {
			t.Errorf("first failing verdict %q, want layer %d", failed.Detail, fc.layer)
		}
		for _, group := range fc.want {
			found := false
			for _, alt := range strings.Split(group, "|") {
				found = found || strings.Contains(failed.Detail, alt)
			}
			if !found {
				t.Errorf("first failing verdict %q, want it to say %q", failed.Detail, group)
			}
		}
		// Every canary device that failed, failed at the expected layer.
		for _, d := range st.Devices {
			if d.Layer != 0 && d.Layer != fc.layer {
				t.Errorf("%s failed at layer %d (%s), want layer %d", d.Name, d.Layer, d.Reason, fc.layer)
			}
		}
		if failedAt.After(rollback.Time) {
			t.Errorf("rollback decided at %s before the first failure at %s", rollback.Time, failedAt)
		}
		t.Logf("%s: %s: %s", fc.name, failed.Device, failed.Detail)
		t.Logf("%s: rollback: %s", fc.name, rollback.Detail)
	}
	// Every canary device fails, but the rollback starts at the first
	// failure: the analysis says artifact issue when the others failed too,
	// inconclusive when they were still healthy at that moment.
	if a := st.Analysis + rollback.Detail; !strings.Contains(a, "artifact issue") && !strings.Contains(a, "inconclusive") && !fc.trend {
		t.Errorf("failure analysis %q, want an artifact issue or inconclusive (every canary device fails)", st.Analysis)
	}

	switched, ok := lastBefore(recs, failedAt, func(r auditRec) bool {
		return r.Action == "switch" && r.Outcome == "ok" && r.Device == device
	})
	if !ok {
		t.Fatalf("no switch of %s before its failure:\n%s", device, dumpAudit(recs))
	}
	if len(left) == 0 {
		t.Fatal("no device left the stable slot")
	}
	var back time.Time
	for d, at := range restored {
		if at.IsZero() {
			t.Errorf("%s did not come back to 1.0.0 with its checks passing", d)
		}
		if at.After(back) {
			back = at
		}
	}
	logFault(t, fc.name, failedAt.Sub(switched.Time), rollback.Time.Sub(failedAt), back.Sub(rollback.Time))
}

// testQuarantine: one canary device fails alone (the fault is limited to
// it), inside the failure budget: it is rolled back and quarantined, the
// rollout goes on and every other device ends on the new version.
func testQuarantine(t *testing.T, ctx context.Context, c *testcluster.Cluster, devices []string) {
	app := "ft-quarantine"
	cleanup(t, c, app)
	dir := t.TempDir()
	v1 := writePolicy(t, dir, policySpec{App: app, Version: "1.0.0", CanarySoak: "3s", WaveSoak: "2s", MaxFailurePercent: 40})
	if res := fleetplan(t, ctx, "apply", "-auto-approve", v1); res.code != 0 {
		t.Fatalf("installing 1.0.0 exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	waitSettled(t, c, devices, app, "blue", "1.0.0")

	// The victim: a canary device (ask the planner).
	probe := writePolicy(t, dir, policySpec{App: app, Version: "2.0.0", MaxFailurePercent: 40})
	plan := fleetplan(t, ctx, "plan", "-json", probe)
	var doc struct {
		Rollouts []struct {
			Stages []struct {
				Canary  bool                    `json:"canary"`
				Devices []struct{ Name string } `json:"devices"`
			} `json:"stages"`
		} `json:"rollouts"`
	}
	if err := json.Unmarshal([]byte(plan.stdout), &doc); err != nil || len(doc.Rollouts) != 1 || len(doc.Rollouts[0].Stages) == 0 {
		t.Fatalf("plan -json: %v\n%s\n%s", err, plan.stdout, plan.stderr)
	}
	canary := doc.Rollouts[0].Stages[0].Devices
	if len(canary) < 3 {
		t.Fatalf("the canary has %d devices, want one per class (3)", len(canary))
	}
	// cleanup releases it too if the test stops early.
	victim := canary[0].Name

	v2 := writePolicy(t, dir, policySpec{App: app, Version: "2.0.0", MaxFailurePercent: 40, Env: map[string]string{
		"EDGEINFER_FAULT_UNHEALTHY_AFTER": "0s",
		"EDGEINFER_FAULT_NODES":           victim,
	}})
	watch := watchRestore(c, devices, app, "blue", "1.0.0")
	res := fleetplan(t, ctx, "apply", "-auto-approve", v2)
	_, restored := watch.wait(t, 60*time.Second, victim)
	if res.code != 0 {
		t.Fatalf("rolling out 2.0.0 with %s failing alone exited %d, want 0 (done)\n%s\n%s", victim, res.code, res.stdout, res.stderr)
	}

	st := statusOf(t, ctx, app)
	if st.State.Outcome != "succeeded" {
		t.Errorf("outcome %q, want succeeded", st.State.Outcome)
	}
	for _, d := range st.Devices {
		want := "healthy"
		if d.Name == victim {
			want = "quarantined"
			if d.Layer != 3 || !strings.Contains(d.Reason, "unhealthy") {
				t.Errorf("%s quarantined at layer %d for %q, want layer 3 unhealthy", d.Name, d.Layer, d.Reason)
			}
		}
		if d.State != want {
			t.Errorf("%s is %s (%s), want %s", d.Name, d.State, d.Reason, want)
		}
	}
	reg := fleetplan(t, ctx, "registry", "list", "-json")
	var devs []struct {
		Name   string `json:"name"`
		Status string `json:"status"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal([]byte(reg.stdout), &devs); err != nil {
		t.Fatalf("registry list -json: %v\n%s\n%s", err, reg.stdout, reg.stderr)
	}
	quarantined := false
	for _, d := range devs {
		if d.Name == victim {
			quarantined = d.Status == "quarantined" && strings.Contains(d.Reason, app)
			if !quarantined {
				t.Errorf("registry: %s is %s (%s), want quarantined by %s", d.Name, d.Status, d.Reason, app)
			}
		}
	}
	// The victim is back on the old slot, every other device on the new.
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		var problems []string
		blue, err := slotInstances(c, app, "blue")
		if err != nil {
			return false, err.Error()
		}
		green, err := slotInstances(c, app, "green")
		if err != nil {
			return false, err.Error()
		}
		for _, d := range devices {
			var msg string
			if d == victim {
				msg = settled(c, app, "blue", "1.0.0", blue[d])
				if green[d] != nil {
					msg += "; still runs slot green"
				}
			} else {
				msg = settled(c, app, "green", "2.0.0", green[d])
				if blue[d] != nil {
					msg += "; still runs slot blue"
				}
			}
			if strings.TrimPrefix(msg, "; ") != "" {
				problems = append(problems, d+": "+strings.TrimPrefix(msg, "; "))
			}
		}
		return len(problems) == 0, strings.Join(problems, "; ")
	})

	recs := auditTrail(t, ctx, app, st.Rollout.ID)
	failed, ok := find(recs, time.Time{}, func(r auditRec) bool {
		return r.Action == "verify" && r.Outcome == "failed" && r.Device == victim
	})
	if !ok {
		t.Fatalf("%s never failed its verification:\n%s", victim, dumpAudit(recs))
	}
	if !strings.HasPrefix(failed.Detail, "L3: ") {
		t.Errorf("%s failed with %q, want layer 3", victim, failed.Detail)
	}
	for _, r := range recs {
		if r.Action == "verify" && r.Outcome == "failed" && r.Device != victim {
			t.Errorf("%s failed too: %s", r.Device, r.Detail)
		}
		if r.Action == "decision:rollback" {
			t.Errorf("the rollout was rolled back: %s", r.Detail)
		}
	}
	q, ok := find(recs, failed.Time, func(r auditRec) bool {
		return r.Action == "quarantine" && r.Outcome == "intent" && r.Device == victim
	})
	if !ok {
		t.Fatalf("%s was not quarantined:\n%s", victim, dumpAudit(recs))
	}
	switched, ok := lastBefore(recs, failed.Time, func(r auditRec) bool {
		return r.Action == "switch" && r.Outcome == "ok" && r.Device == victim
	})
	if !ok {
		t.Fatalf("no switch of %s before its failure", victim)
	}
	t.Logf("quarantine: %s: %s", victim, failed.Detail)
	logFault(t, "quarantine", failed.Time.Sub(switched.Time), q.Time.Sub(failed.Time), restored[victim].Sub(q.Time))

	// Released, the device can be deployed to again.
	if res := fleetplan(t, ctx, "registry", "release", victim); res.code != 0 {
		t.Fatalf("registry release %s exited %d\n%s\n%s", victim, res.code, res.stdout, res.stderr)
	}
	if !contains(deployableDevices(t, ctx, c), victim) {
		t.Errorf("%s is still not deployable after its release", victim)
	}
}

func logFault(t *testing.T, name string, switchedToFailed, failedToRollback, rollbackToRestored time.Duration) {
	t.Helper()
	r := func(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }
	t.Logf("FAULT %s: switched->failed=%s failed->rollback=%s rollback->restored=%s",
		name, r(switchedToFailed), r(failedToRollback), r(rollbackToRestored))
}

// lastBefore returns the last record before until that matches.
func lastBefore(recs []auditRec, until time.Time, match func(auditRec) bool) (auditRec, bool) {
	var out auditRec
	found := false
	for _, r := range recs {
		if r.Time.After(until) {
			break
		}
		if match(r) {
			out, found = r, true
		}
	}
	return out, found
}

func dumpAudit(recs []auditRec) string {
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s %-10s %-28s %-10s %s\n", r.Time.Format("15:04:05.000"), r.Device, r.Action, r.Outcome, r.Detail)
	}
	return b.String()
}
