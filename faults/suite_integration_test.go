//go:build integration

package faults

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// app is the suite's application (its own, removed before and after).
const app = "fx-faults"

// Trial kinds, in the order consecutive seeds cycle through them (seed mod
// len): any 4 consecutive seeds starting at a multiple of 7 cover the
// controller kill, API faults, device freeze and power-off.
var kinds = []string{"kill", "api", "freeze", "poweroff", "nomad-restart", "consul-restart", "race"}

// badReleases are the demo application's fault modes a bad release uses.
var badReleases = map[string]map[string]string{
	"crash":        {"EDGEINFER_FAULT_CRASH": "1"},
	"unhealthy":    {"EDGEINFER_FAULT_UNHEALTHY_AFTER": "2s"},
	"wrong-output": {"EDGEINFER_FAULT_WRONG_OUTPUT": "1"},
}

type suite struct {
	t   *testing.T
	c   *testcluster.Cluster
	dir string
	// kinds are the trial kinds seeds cycle through (FAULTS_KINDS, a
	// comma-separated subset; default all).
	kinds []string
}

// trial is one seeded fault trial.
type trial struct {
	n    int
	seed int64
	kind string
	rng  *rand.Rand
	// bad is the fault mode of the release ("" for a good release).
	bad     string
	version string
	policy  string
	// prevRun is the run ID before the trial: the trial's run is the next.
	prevRun string

	holdApproval     atomic.Bool
	operatorRollback atomic.Bool

	mu    sync.Mutex
	extra []Violation // violations the trial itself saw
	lines []string
	notes []string
}

func (tr *trial) logf(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.lines = append(tr.lines, time.Now().Format("15:04:05.000")+" "+fmt.Sprintf(format, args...))
}

func (tr *trial) note(format string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.notes = append(tr.notes, fmt.Sprintf(format, args...))
}

// row is one line of the result table.
type row struct {
	trials, violations, falseRollbacks, missedBreaches int
	notes                                              []string
}

// TestFaultSuite runs FAULTS_TRIALS (default 4) seeded trials from
// FAULTS_SEED (default: the time), each followed by the invariant checker,
// and prints the table fault kind x trials x invariant violations x false
// rollbacks x missed breaches. It fails when any of the last three is not
// zero. A trial is replayed with FAULTS_SEED=<its seed> FAULTS_TRIALS=1.
func TestFaultSuite(t *testing.T) {
	c := testcluster.Require(t)
	trials := envInt(t, "FAULTS_TRIALS", 4)
	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("FAULTS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("FAULTS_SEED=%d FAULTS_TRIALS=%d (replay one trial with FAULTS_SEED=<trial seed> FAULTS_TRIALS=1)", seed, trials)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	s := &suite{t: t, c: c, dir: t.TempDir(), kinds: kinds}
	if v := os.Getenv("FAULTS_KINDS"); v != "" {
		s.kinds = nil
		for _, k := range strings.Split(v, ",") {
			k = strings.TrimSpace(k)
			if !slices.Contains(kinds, k) {
				t.Fatalf("FAULTS_KINDS: unknown kind %q (known: %s)", k, strings.Join(kinds, ", "))
			}
			s.kinds = append(s.kinds, k)
		}
	}
	installAgent(t, ctx, c)
	removeApp(t, c, app)
	t.Cleanup(func() {
		for _, d := range c.Devices {
			_, _ = c.Script("device-thaw", d)
			c.EnsureUp(t, d)
		}
		removeApp(t, c, app)
	})
	s.install(ctx)

	rows := map[string]*row{}
	for _, k := range kinds {
		rows[k] = &row{}
	}
	started := time.Now()
	for i := 0; i < trials; i++ {
		tr := s.newTrial(i, seed+int64(i))
		r := rows[tr.kind]
		r.trials++
		begin := time.Now()
		violations, falseRB, missed := s.run(ctx, tr)
		r.violations += len(violations)
		r.falseRollbacks += falseRB
		r.missedBreaches += missed
		r.notes = append(r.notes, tr.notes...)
		status := "ok"
		if len(violations)+falseRB+missed > 0 {
			status = "FAILED"
		}
		t.Logf("TRIAL %d seed=%d kind=%s release=%s %s in %s", i, tr.seed, tr.kind, releaseName(tr), status, time.Since(begin).Round(time.Second))
		for _, l := range tr.lines {
			t.Logf("    %s", l)
		}
		for _, v := range violations {
			t.Errorf("TRIAL %d seed=%d kind=%s: invariant violated: %s", i, tr.seed, tr.kind, v)
		}
		if falseRB > 0 {
			t.Errorf("TRIAL %d seed=%d kind=%s: FALSE ROLLBACK of a good release", i, tr.seed, tr.kind)
		}
		if missed > 0 {
			t.Errorf("TRIAL %d seed=%d kind=%s: MISSED BREACH: bad release %s confirmed", i, tr.seed, tr.kind, tr.bad)
		}
	}
	table := formatTable(rows)
	t.Logf("fault-injection suite: %d trials from seed %d in %s\n%s", trials, seed, time.Since(started).Round(time.Second), table)
}

func releaseName(tr *trial) string {
	if tr.bad == "" {
		return tr.version + " (good)"
	}
	return tr.version + " (bad: " + tr.bad + ")"
}

func formatTable(rows map[string]*row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-15s %6s %11s %15s %15s  %s\n", "fault kind", "trials", "violations", "false rollback", "missed breach", "notes")
	tot := row{}
	for _, k := range kinds {
		r := rows[k]
		notes := strings.Join(dedupe(r.notes), "; ")
		fmt.Fprintf(&b, "%-15s %6d %11d %15d %15d  %s\n", k, r.trials, r.violations, r.falseRollbacks, r.missedBreaches, notes)
		tot.trials += r.trials
		tot.violations += r.violations
		tot.falseRollbacks += r.falseRollbacks
		tot.missedBreaches += r.missedBreaches
	}
	fmt.Fprintf(&b, "%-15s %6d %11d %15d %15d\n", "total", tot.trials, tot.violations, tot.falseRollbacks, tot.missedBreaches)
	return b.String()
}

func dedupe(in []string) []string {
	seen := map[string]int{}
	var order []string
	for _, s := range in {
		if seen[s] == 0 {
			order = append(order, s)
		}
		seen[s]++
	}
	out := make([]string, 0, len(order))
	for _, s := range order {
		if seen[s] > 1 {
			s = fmt.Sprintf("%s (x%d)", s, seen[s])
		}
		out = append(out, s)
	}
	return out
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		t.Fatalf("%s=%q: want a count", name, s)
	}
	return v
}

// install puts a good 1.0.0 on every device (the base of the trials).
func (s *suite) install(ctx context.Context) {
	s.t.Helper()
	policy := writePolicy(s.t, s.dir, policySpec{App: app, Version: "1.0.0"})
	ictx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	res := fleetplan(ictx, nil, "apply", "-auto-approve", "-actor", "faults-setup", policy)
	if res.code != 0 {
		s.t.Fatalf("installing %s 1.0.0 exited %d\n%s\n%s", app, res.code, res.stdout, res.stderr)
	}
	if v := CheckSettled(ctx, s.c.Nomad, s.c.Consul, app, 90*time.Second); len(v) > 0 {
		s.t.Fatalf("after installing %s 1.0.0: %v", app, v)
	}
}

func (s *suite) newTrial(n int, seed int64) *trial {
	tr := &trial{n: n, seed: seed, kind: s.kinds[int(((seed%int64(len(s.kinds)))+int64(len(s.kinds)))%int64(len(s.kinds)))],
		rng: rand.New(rand.NewSource(seed))}
	tr.version = fmt.Sprintf("2.%d.%d", n+1, seed%1000)
	if tr.rng.Intn(2) == 0 {
		names := []string{"crash", "unhealthy", "wrong-output"}
		tr.bad = names[tr.rng.Intn(len(names))]
	}
	return tr
}

// run runs one trial and returns the invariant violations, false
// rollbacks and missed breaches it found.
func (s *suite) run(ctx context.Context, tr *trial) ([]Violation, int, int) {
	tctx, cancel := context.WithTimeout(ctx, 7*time.Minute)
	defer cancel()
	if st, _ := readState(tctx, s.c.Consul, app); st != nil {
		tr.prevRun = st.ID
	}
	// The kind may force the release: a kill during the rollback needs a
	// bad one, during the approval wait or the confirmation a good one.
	var do func(context.Context, *trial)
	switch tr.kind {
	case "kill":
		do = s.kill
	case "api":
		do = s.apiFaults
	case "freeze":
		do = s.freeze
	case "poweroff":
		do = s.powerOff
	case "nomad-restart", "consul-restart":
		do = s.serverRestart
	case "race":
		do = s.race
	}
	if tr.kind == "kill" {
		phases := []string{"switching", "soak", "gate", "approval", "confirm", "rollback"}
		ph := phases[tr.rng.Intn(len(phases))]
		tr.notes = nil
		switch ph {
		case "rollback":
			if tr.bad == "" {
				tr.bad = "crash"
			}
		case "approval", "confirm":
			tr.bad = ""
		}
		tr.lines = append(tr.lines, "kill phase: "+ph)
		do = func(ctx context.Context, tr *trial) { s.killAt(ctx, tr, ph) }
	}
	tr.policy = writePolicy(s.t, s.dir, policySpec{App: app, Version: tr.version, Env: badReleases[tr.bad]})
	tr.logf("release %s, previous run %s", releaseName(tr), tr.prevRun)

	// A trial starts from a healthy fleet (an earlier trial's powered-off
	// or frozen device may still be coming back): the pre-flight checklist
	// would rightly stop the rollout otherwise.
	waitHealthy(s.t, s.c, 2*time.Minute)
	stopApprover := s.approver(tctx, tr)
	do(tctx, tr)
	stopApprover()

	// Whatever the trial did to the devices, they are back before the
	// ground truth is read.
	for _, d := range s.c.Devices {
		_, _ = s.c.Script("device-thaw", d)
		s.c.EnsureUp(s.t, d)
	}
	waitReady(s.t, s.c, 2*time.Minute)

	st, err := readState(tctx, s.c.Consul, app)
	falseRB, missed := 0, 0
	var violations []Violation
	switch {
	case err != nil || st == nil:
		violations = append(violations, Violation{Invariant: InvRead, Detail: fmt.Sprintf("no state after the trial: %v", err)})
	case st.ID == tr.prevRun:
		violations = append(violations, Violation{Invariant: InvAudit, Detail: "the trial's apply never started a run"})
	default:
		tr.logf("run %s outcome %q phase %s reason %q", st.ID, st.Outcome, st.Phase, st.RollbackReason)
		if st.Outcome == "rollback-incomplete" {
			tr.note("rollback-incomplete")
		}
		rolledBack := st.Outcome == "rolled-back" || st.Outcome == "rollback-incomplete"
		if tr.bad == "" && rolledBack && !tr.operatorRollback.Load() {
			falseRB = 1
			tr.logf("false rollback: %s", st.RollbackReason)
		}
		if tr.bad != "" && st.Outcome == "succeeded" {
			missed = 1
		}
		if tr.kind == "poweroff" || st.Outcome == "rollback-incomplete" {
			// A device that was off at the end is caught up (or verified
			// back) through the gate, as an operator would.
			cctx, ccancel := context.WithTimeout(tctx, 3*time.Minute)
			res := fleetplan(cctx, nil, "catch-up", "-wait", app)
			ccancel()
			tr.logf("catch-up -wait exited %d: %s", res.code, lastLines(res.stdout+res.stderr, 2))
		}
		violations = append(CheckSettled(tctx, s.c.Nomad, s.c.Consul, app, 90*time.Second), tr.extra...)
	}
	if st == nil || st.Outcome == "" || len(violations) > 0 {
		// The next trial starts from a clean application.
		tr.logf("resetting %s for the next trial", app)
		removeApp(s.t, s.c, app)
		s.install(ctx)
	}
	return violations, falseRB, missed
}

// approver approves the canary of the trial's run when it waits for it
// (unless the trial holds the approval back), like an operator.
func (s *suite) approver(ctx context.Context, tr *trial) (stop func()) {
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		approved := ""
		for actx.Err() == nil {
			st, _ := readState(actx, s.c.Consul, app)
			if st != nil && st.ID != tr.prevRun && st.ID != approved && st.Phase == "AWAITING_APPROVAL" && st.Approval == nil && !tr.holdApproval.Load() {
				res := fleetplan(actx, nil, "approve", "-m", "fault trial", "-actor", "faults-operator", app)
				tr.logf("approve exited %d %s", res.code, lastLines(res.stdout+res.stderr, 1))
				if res.code == 0 {
					approved = st.ID
				}
			}
			sleep(actx, 500*time.Millisecond)
		}
	}()
	return func() { cancel(); <-done }
}

// finish drives the trial's run to its end: it waits for the controller p
// (when given), then starts `apply -wait` again, resuming a halted or
// paused run, until the run is finished.
func (s *suite) finish(ctx context.Context, tr *trial, env []string, p *proc) {
	for attempt := 0; attempt < 12 && ctx.Err() == nil; attempt++ {
		if p != nil {
			select {
			case <-p.done:
			case <-ctx.Done():
				p.kill()
				tr.logf("trial timed out; controller killed:\n%s", lastLines(p.output(), 8))
				return
			}
			tr.logf("controller exited %d: %s", p.code, lastLines(p.output(), 2))
		}
		st, _ := readState(ctx, s.c.Consul, app)
		if st != nil && st.ID != tr.prevRun {
			if st.Outcome != "" {
				return
			}
			if st.Halt != nil || st.Paused {
				// An operator fixes the cause before resuming: give a
				// halted run's cause (devices coming back, a server
				// restarting) time to go away.
				sleep(ctx, time.Duration(min(2+3*attempt, 15))*time.Second)
				res := fleetplan(ctx, nil, "resume", app)
				tr.logf("run halted=%t paused=%t: resume exited %d %s", st.Halt != nil, st.Paused, res.code, lastLines(res.stdout+res.stderr, 1))
			}
		}
		var err error
		p, err = start(ctx, env, "apply", "-wait", "-actor", "faults-ctl", tr.policy)
		if err != nil {
			tr.logf("starting apply: %v", err)
			return
		}
	}
	if p != nil && !p.exited() {
		p.kill()
	}
	tr.logf("the run did not finish after 12 controllers")
}

// waitFor waits until the trial's run matches (polling its state), or
// the timeout, or the controller p exiting.
func (s *suite) waitFor(ctx context.Context, tr *trial, p *proc, timeout time.Duration, match func(*runState) bool) bool {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		st, _ := readState(ctx, s.c.Consul, app)
		if st != nil && st.ID != tr.prevRun && match(st) {
			return true
		}
		if p != nil && p.exited() {
			return false
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return false
}

// waitSwitched waits until the trial's run switched device (an ok switch
// in its audit trail).
func (s *suite) waitSwitched(ctx context.Context, tr *trial, p *proc, device string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if st, _ := readState(ctx, s.c.Consul, app); st != nil && st.ID != tr.prevRun {
			recs, _ := readAudit(ctx, s.c.Consul, app, st.ID)
			for _, r := range recs {
				if r.Device == device && r.Action == "switch" && r.Outcome == "ok" {
					return true
				}
			}
		}
		if p != nil && p.exited() {
			return false
		}
		sleep(ctx, 250*time.Millisecond)
	}
	return false
}

var phaseMatch = map[string]func(*runState) bool{
	"switching": func(st *runState) bool {
		return (st.Phase == "CANARY" || st.Phase == "WAVE") && st.Step == "switching"
	},
	"soak":     func(st *runState) bool { return st.Step == "soaking" },
	"gate":     func(st *runState) bool { return st.Step == "gate" },
	"approval": func(st *runState) bool { return st.Phase == "AWAITING_APPROVAL" },
	"confirm":  func(st *runState) bool { return st.Phase == "CONFIRM" || st.Phase == "DONE" },
	"rollback": func(st *runState) bool { return st.Phase == "ROLLING_BACK" },
}

// killAt: the controller is SIGKILLed at a random moment of a phase, then
// started again with the same apply until the run is finished.
func (s *suite) killAt(ctx context.Context, tr *trial, phase string) {
	if phase == "approval" {
		tr.holdApproval.Store(true)
	}
	p, err := start(ctx, nil, "apply", "-actor", "faults-ctl", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	if s.waitFor(ctx, tr, p, 3*time.Minute, phaseMatch[phase]) {
		d := time.Duration(tr.rng.Intn(1500)) * time.Millisecond
		sleep(ctx, d)
		st, _ := readState(ctx, s.c.Consul, app)
		p.kill()
		where := "?"
		if st != nil {
			where = fmt.Sprintf("%s/%s stage %s", st.Phase, st.Step, st.ID)
		}
		tr.logf("SIGKILL %s+%s (at %s)", phase, d, where)
		p = nil
	} else {
		tr.logf("phase %s not reached", phase)
		tr.note("kill phase %s not reached", phase)
	}
	tr.holdApproval.Store(false)
	s.finish(ctx, tr, nil, p)
}

// kill is the default kill trial (killAt with a seeded phase, set in run).
func (s *suite) kill(ctx context.Context, tr *trial) { s.killAt(ctx, tr, "switching") }

// apiFaults: 500s, dropped connections and latency between fleetplan and
// both APIs, through the fault proxy, for the whole run.
func (s *suite) apiFaults(ctx context.Context, tr *trial) {
	cfg := ProxyConfig{
		ErrorRate:   0.02 + 0.06*tr.rng.Float64(),
		DropRate:    0.01 + 0.03*tr.rng.Float64(),
		LatencyRate: 0.1 + 0.2*tr.rng.Float64(),
		MaxLatency:  time.Duration(100+tr.rng.Intn(700)) * time.Millisecond,
		Seed:        tr.seed,
	}
	np, err := StartProxy("http://127.0.0.1:4646", cfg)
	if err != nil {
		tr.logf("%v", err)
		return
	}
	defer np.Close()
	cfg.Seed = tr.seed + 1
	cp, err := StartProxy("http://127.0.0.1:8500", cfg)
	if err != nil {
		tr.logf("%v", err)
		return
	}
	defer cp.Close()
	tr.logf("fault proxy: %s; nomad via %s, consul via %s", cfg, np.Addr, cp.Addr)
	env := append(os.Environ(), "NOMAD_ADDR=http://"+np.Addr, "CONSUL_HTTP_ADDR="+cp.Addr)
	p, err := start(ctx, env, "apply", "-actor", "faults-ctl", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	s.finish(ctx, tr, env, p)
	tr.logf("proxy nomad %+v consul %+v", np.Stats(), cp.Stats())
}

// freeze: one device's Nomad client and Consul agent are frozen (SIGSTOP)
// for 4-20 s, before or after its switch, then thawed.
func (s *suite) freeze(ctx context.Context, tr *trial) {
	device := s.c.Devices[tr.rng.Intn(len(s.c.Devices))]
	afterSwitch := tr.rng.Intn(2) == 0
	hold := time.Duration(4000+tr.rng.Intn(16000)) * time.Millisecond
	p, err := start(ctx, nil, "apply", "-actor", "faults-ctl", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	var reached bool
	if afterSwitch {
		reached = s.waitSwitched(ctx, tr, p, device, 3*time.Minute)
	} else {
		reached = s.waitFor(ctx, tr, p, 3*time.Minute, func(st *runState) bool { return st.Phase == "CANARY" })
	}
	if reached {
		if out, err := s.c.Script("device-freeze", device); err != nil {
			tr.logf("device-freeze %s: %v %s", device, err, out)
		}
		tr.logf("froze %s (after its switch: %t) for %s", device, afterSwitch, hold)
		go func() {
			sleep(ctx, hold)
			_, _ = s.c.Script("device-thaw", device)
			tr.logf("thawed %s", device)
		}()
	} else {
		tr.note("freeze point not reached")
		tr.logf("%s never switched; not frozen", device)
	}
	s.finish(ctx, tr, nil, p)
}

// powerOff: a device is powered off (device-down) right after its switch
// and powered on after the run ended; then `catch-up -wait` (in run).
func (s *suite) powerOff(ctx context.Context, tr *trial) {
	device := s.c.Devices[tr.rng.Intn(len(s.c.Devices))]
	p, err := start(ctx, nil, "apply", "-actor", "faults-ctl", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	if s.waitSwitched(ctx, tr, p, device, 3*time.Minute) {
		sleep(ctx, time.Duration(tr.rng.Intn(3000))*time.Millisecond)
		if out, err := s.c.Script("device-down", device); err != nil {
			tr.logf("device-down %s: %v %s", device, err, out)
		}
		tr.logf("powered off %s after its switch", device)
	} else {
		tr.note("power-off point not reached")
		tr.logf("%s never switched; left on", device)
	}
	s.finish(ctx, tr, nil, p)
	if out, err := s.c.Script("device-up", device); err != nil {
		tr.logf("device-up %s: %v %s", device, err, lastLines(string(out), 2))
	}
}

// serverRestart: the Nomad server restarted during switches or a soak, or
// the Consul server during a soak.
func (s *suite) serverRestart(ctx context.Context, tr *trial) {
	which := strings.TrimSuffix(tr.kind, "-restart")
	phase := "soak"
	if which == "nomad" && tr.rng.Intn(2) == 0 {
		phase = "switching"
	}
	p, err := start(ctx, nil, "apply", "-actor", "faults-ctl", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	if s.waitFor(ctx, tr, p, 3*time.Minute, phaseMatch[phase]) {
		sleep(ctx, time.Duration(tr.rng.Intn(1500))*time.Millisecond)
		begin := time.Now()
		out, err := s.c.Script("server-restart", which)
		tr.logf("restarted the %s server during %s in %s (err %v) %s", which, phase, time.Since(begin).Round(time.Millisecond), err, lastLines(string(out), 1))
	} else {
		tr.note("restart point not reached")
	}
	s.finish(ctx, tr, nil, p)
}

// race: two controllers started at once (exactly one may act; the other
// exits naming the holder) while an operator pauses and resumes, approves,
// and sometimes asks for a rollback.
func (s *suite) race(ctx context.Context, tr *trial) {
	p1, err := start(ctx, nil, "apply", "-actor", "faults-ctl-1", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		return
	}
	p2, err := start(ctx, nil, "apply", "-actor", "faults-ctl-2", tr.policy)
	if err != nil {
		tr.logf("starting apply: %v", err)
		p1.kill()
		return
	}
	opDone := make(chan struct{})
	rollbackToo := tr.rng.Intn(4) == 0
	pauseAt := time.Duration(2000+tr.rng.Intn(10000)) * time.Millisecond
	pauseFor := time.Duration(1000+tr.rng.Intn(3000)) * time.Millisecond
	rollbackAt := time.Duration(3000+tr.rng.Intn(20000)) * time.Millisecond
	go func() {
		defer close(opDone)
		sleep(ctx, pauseAt)
		res := fleetplan(ctx, nil, "pause", app)
		tr.logf("operator: pause exited %d %s", res.code, lastLines(res.stdout+res.stderr, 1))
		sleep(ctx, pauseFor)
		res = fleetplan(ctx, nil, "resume", app)
		tr.logf("operator: resume exited %d %s", res.code, lastLines(res.stdout+res.stderr, 1))
		if rollbackToo {
			sleep(ctx, rollbackAt-pauseAt-pauseFor)
			if st, _ := readState(ctx, s.c.Consul, app); st != nil && st.ID != tr.prevRun && st.Outcome == "" {
				tr.operatorRollback.Store(true)
				res = fleetplan(ctx, nil, "rollback", "-reason", "fault trial operator", app)
				tr.logf("operator: rollback exited %d %s", res.code, lastLines(res.stdout+res.stderr, 1))
			}
		}
	}()
	// The first to exit is the one that lost the lock race (or both
	// finished).
	var loser, winner *proc
	select {
	case <-p1.done:
		loser, winner = p1, p2
	case <-p2.done:
		loser, winner = p2, p1
	case <-ctx.Done():
	}
	if loser != nil {
		tr.logf("one controller exited %d: %s", loser.code, lastLines(loser.output(), 2))
	}
	s.finish(ctx, tr, nil, winner)
	<-opDone
	if st, _ := readState(ctx, s.c.Consul, app); st != nil && st.ID != tr.prevRun {
		recs, _ := readAudit(ctx, s.c.Consul, app, st.ID)
		actors := map[string]bool{}
		for _, r := range recs {
			if r.Action == "switch" && r.Outcome == "intent" {
				actors[r.Actor] = true
			}
		}
		if actors["faults-ctl-1"] && actors["faults-ctl-2"] {
			tr.mu.Lock()
			tr.extra = append(tr.extra, Violation{Invariant: "one-actor", Detail: "both racing controllers switched devices"})
			tr.mu.Unlock()
			tr.logf("both racing controllers switched devices: %v", actors)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
