//go:build integration

package command_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/testcluster"
)

// submittablePolicy writes policy() with the jobspec copied next to it and
// named by a relative path (what a request to the controller service
// carries), and max_parallel as given.
func submittablePolicy(t *testing.T, dir, app, version string, maxParallel int) string {
	t.Helper()
	file := policy(t, dir, app, version, nil, "fleet")
	abs := filepath.Join(testcluster.RepoRoot(), "examples", "edgeinfer.nomad.hcl")
	src, err := os.ReadFile(abs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edgeinfer.nomad.hcl"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	pol, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(pol), fmt.Sprintf("%q", abs), `"edgeinfer.nomad.hcl"`, 1)
	s = strings.Replace(s, "max_parallel = 6", fmt.Sprintf("max_parallel = %d", maxParallel), 1)
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// runState is the part of a rollout's state in Consul KV the tests read.
type runState struct {
	ID        string `json:"id"`
	Phase     string `json:"phase"`
	Step      string `json:"step"`
	Outcome   string `json:"outcome"`
	Candidate string `json:"candidate"`
}

func readState(c *testcluster.Cluster, app string) (*runState, error) {
	pair, _, err := c.Consul.KV().Get("fleetplan/rollouts/"+app+"/state", nil)
	if err != nil || pair == nil {
		return nil, err
	}
	var s runState
	return &s, json.Unmarshal(pair.Value, &s)
}

// controllerHealth is /v1/health of one controller instance.
type controllerHealth struct {
	Role     string `json:"role"`
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
}

func health(addr string) (controllerHealth, error) {
	var h controllerHealth
	cl := http.Client{Timeout: 2 * time.Second}
	resp, err := cl.Get("http://" + addr + "/v1/health")
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

type actorRecord struct {
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
}

// auditRecords returns the rollout's audit records, oldest first.
func auditRecords(t *testing.T, ctx context.Context, app string) []actorRecord {
	t.Helper()
	res := fleetplan(t, ctx, "audit", "-json", "-rollout", app)
	var recs []actorRecord
	if err := json.Unmarshal([]byte(res.stdout), &recs); err != nil {
		t.Fatalf("audit -json: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	return recs
}

// auditBy returns the times of the rollout's audit records whose actor
// contains who, oldest first.
func auditBy(t *testing.T, ctx context.Context, app, who string) []time.Time {
	t.Helper()
	var out []time.Time
	for _, r := range auditRecords(t, ctx, app) {
		if strings.Contains(r.Actor, who) {
			out = append(out, r.Time)
		}
	}
	return out
}

// reapRecord is an audit record of a standby destroying a silent leader's
// session.
type reapRecord struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail"`
}

// reapsAfter returns the records, after since, of a standby destroying the
// session of the leader named leader (in the trail of actions outside a
// rollout).
func reapsAfter(t *testing.T, ctx context.Context, since time.Time, leader string) []reapRecord {
	t.Helper()
	res := fleetplan(t, ctx, "audit", "-json", "-rollout", "_global")
	var recs []reapRecord
	if err := json.Unmarshal([]byte(res.stdout), &recs); err != nil {
		t.Fatalf("audit -json -rollout _global: %v\n%s\n%s", err, res.stdout, res.stderr)
	}
	var out []reapRecord
	for _, r := range recs {
		if r.Action == "controller-reap" && r.Time.After(since) && strings.Contains(r.Detail, "the leader "+leader+" has not renewed") {
			out = append(out, r)
		}
	}
	return out
}

// reapLogLine matches the standby's log line when it destroys a silent
// leader's session.
var reapLogLine = regexp.MustCompile(`the leader (.+) has not renewed for ([0-9.]+m?s); destroyed its session ([0-9a-f-]+)`)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// controllerProc is a `fleetplan controller` process started by a test.
type controllerProc struct {
	name, addr string
	cmd        *exec.Cmd
	log        *syncBuffer
}

func startController(t *testing.T, name string) *controllerProc {
	t.Helper()
	p := &controllerProc{name: name, addr: freePort(t), log: &syncBuffer{}}
	p.cmd = exec.Command(fleetplanBin, "controller", "-name", name, "-http-addr", p.addr, "-log-level", "debug",
		"-session-ttl", "10s", "-lock-delay", "1s", "-scan-interval", "1s")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("log of controller %s:\n%s", p.name, p.log.String())
		}
	})
	return p
}

func (p *controllerProc) role() string {
	h, err := health(p.addr)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	return h.Role
}

// TestIntegrationControllerFrozenLeaderIsFenced runs two controller
// processes; the leader is frozen (SIGSTOP) past its session's TTL during a
// wave, the standby sees its heartbeat stop, destroys its session and takes
// over and finishes the rollout, and the old leader,
// thawed, acts no more: no audit record, no Nomad action from it after the
// takeover. Then the new leader is stopped gracefully (SIGTERM) and the
// other takes over at once.
func TestIntegrationControllerFrozenLeaderIsFenced(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-ctl-freeze"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir := t.TempDir()
	file := submittablePolicy(t, dir, app, "1.0.0", 1)

	a := startController(t, "ctl-a")
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) { r := a.role(); return r == "leader", "ctl-a is " + r })
	b := startController(t, "ctl-b")
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) { r := b.role(); return r == "standby", "ctl-b is " + r })

	res := fleetplan(t, ctx, "apply", "-detach", "-auto-approve", file)
	if res.code != 0 || !strings.Contains(res.stdout, "submitted to the fleetplan controller service") || !strings.Contains(res.stdout, "status -watch "+app) {
		t.Fatalf("apply -detach exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	testcluster.Eventually(t, 4*time.Minute, func() (bool, string) {
		s, err := readState(c, app)
		if err != nil || s == nil {
			return false, fmt.Sprintf("no state yet (%v)", err)
		}
		return s.Phase == "WAVE" && s.Step == "switching", fmt.Sprintf("waiting for a wave's switching, at %s/%s", s.Phase, s.Step)
	})

	// Freeze the leader in the middle of the wave's switches.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) { r := b.role(); return r == "leader", "ctl-b is " + r })
	var takeover time.Time
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
		recs := auditBy(t, ctx, app, "ctl-b")
		if len(recs) == 0 {
			return false, "no audit record of ctl-b yet"
		}
		takeover = recs[0]
		return true, ""
	})
	t.Logf("measured: frozen leader -> standby's first recorded action: %s (session TTL 10s, lock delay 1s)", takeover.Sub(frozen).Round(time.Millisecond))
	// The takeover came from the standby destroying the silent leader's
	// session (not from Consul expiring it): its log, the audit trail.
	m := reapLogLine.FindStringSubmatch(b.log.String())
	if m == nil || m[1] != "ctl-a" {
		t.Fatalf("ctl-b did not log that it destroyed ctl-a's session (%q):\n%s", m, b.log.String())
	}
	t.Logf("measured: ctl-b destroyed ctl-a's session %s after %s without a heartbeat", m[3], m[2])
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
		recs := reapsAfter(t, ctx, frozen, "ctl-a")
		return len(recs) > 0 && strings.Contains(recs[0].Actor, "ctl-b"), fmt.Sprintf("no audit record of ctl-b destroying ctl-a's session: %+v", recs)
	})

	// Thaw the old leader only once the new one acts: from now on, nothing
	// it does may reach Nomad or Consul KV.
	beforeThaw := len(auditBy(t, ctx, app, "ctl-a"))
	logAtThaw := len(a.log.String())
	if err := a.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 6*time.Minute, func() (bool, string) {
		s, err := readState(c, app)
		if err != nil || s == nil {
			return false, fmt.Sprintf("no state (%v)", err)
		}
		return s.Outcome != "", fmt.Sprintf("at %s/%s", s.Phase, s.Step)
	})
	s, _ := readState(c, app)
	if s.Outcome != "succeeded" {
		t.Fatalf("the rollout ended %s, want succeeded", s.Outcome)
	}
	waitFleet(t, c, app, s.Candidate, "1.0.0")

	if after := len(auditBy(t, ctx, app, "ctl-a")); after != beforeThaw {
		t.Errorf("the thawed old leader wrote %d audit records after the takeover", after-beforeThaw)
	}
	// Nomad writes log these lines once made (a switch's allocation stops
	// are listed in "device switched ... stopped=[...]"; a switch begun
	// before the freeze may end with nothing left to write).
	tail := a.log.String()[logAtThaw:]
	for _, action := range []string{"slot metadata applied", "registered slot job", "stopped the rejected candidate"} {
		if strings.Contains(tail, action) {
			t.Errorf("the thawed old leader logged a Nomad action after the takeover (%q):\n%s", action, tail)
		}
	}
	if stops := regexp.MustCompile(`stopped=\[[^\]]`).FindString(tail); stops != "" {
		t.Errorf("the thawed old leader stopped allocations after the takeover:\n%s", tail)
	}
	if !strings.Contains(tail, "lost") {
		t.Errorf("the thawed old leader did not notice that it lost its session:\n%s", tail)
	}
	testcluster.Eventually(t, 60*time.Second, func() (bool, string) { r := a.role(); return r == "standby", "ctl-a is " + r })

	// A graceful stop gives the locks back: the standby leads at once.
	stopped := time.Now()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) { r := a.role(); return r == "leader", "ctl-a is " + r })
	t.Logf("measured: leader SIGTERM -> standby leads: %s (at most one health poll late)", time.Since(stopped).Round(time.Millisecond))
}

// serviceInstances returns the addresses of the fleetplan-controller
// service's instances registered in Consul.
func serviceInstances(c *testcluster.Cluster) ([]string, error) {
	entries, _, err := c.Consul.Health().Service("fleetplan-controller", "", false, nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		addr := e.Service.Address
		if addr == "" {
			addr = e.Node.Address
		}
		out = append(out, fmt.Sprintf("%s:%d", addr, e.Service.Port))
	}
	return out, nil
}

// TestIntegrationControllerServiceOnNomad installs the controller as the
// Nomad service job (two allocations), submits a rollout with apply,
// interrupts apply with SIGINT (the rollout goes on), SIGKILLs the leader's
// process during a wave: the standby sees the leader's heartbeat stop,
// destroys its session and takes over, and the rollout finishes with every
// device on the release.
func TestIntegrationControllerServiceOnNomad(t *testing.T) {
	c := testcluster.Require(t)
	app := "it-ctl-nomad"
	cleanup(t, c, app)
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	dir := t.TempDir()
	file := submittablePolicy(t, dir, app, "1.0.0", 1)

	// The binary under test, not the dev cluster's copy.
	if res := fleetplan(t, ctx, "controller", "install", "-command", fleetplanBin, "-log-level", "debug"); res.code != 0 {
		t.Fatalf("controller install exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	t.Cleanup(func() {
		res := fleetplan(t, context.Background(), "controller", "uninstall")
		if res.code != 0 {
			t.Errorf("controller uninstall exited %d\n%s\n%s", res.code, res.stdout, res.stderr)
		}
		// The next tests' apply runs in-process: wait until no
		// controller holds the leadership.
		testcluster.Eventually(t, 60*time.Second, func() (bool, string) {
			pair, _, err := c.Consul.KV().Get("fleetplan/controller/leader", nil)
			return err == nil && (pair == nil || pair.Session == ""), "the leadership lock is still held"
		})
	})
	var leaderAddr string
	var addrs []string
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		var err error
		addrs, err = serviceInstances(c)
		if err != nil || len(addrs) != 2 {
			return false, fmt.Sprintf("controller instances in Consul: %v %v", addrs, err)
		}
		roles := map[string]int{}
		for _, a := range addrs {
			h, err := health(a)
			if err != nil {
				return false, err.Error()
			}
			roles[h.Role]++
			if h.Role == "leader" {
				leaderAddr = a
			}
		}
		return roles["leader"] == 1 && roles["standby"] == 1, fmt.Sprintf("roles %v", roles)
	})
	// On two distinct nodes (the client reports its allocations' status
	// to the server in batches: wait for it).
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
		allocs, _, err := c.Nomad.Jobs().Allocations("fleetplan-controller", false, nil)
		if err != nil {
			return false, err.Error()
		}
		nodes := map[string]bool{}
		for _, al := range allocs {
			if al.ClientStatus == "running" {
				nodes[al.NodeID] = true
			}
		}
		return len(nodes) == 2, fmt.Sprintf("the controllers run on %d distinct node(s), want 2", len(nodes))
	})

	// apply submits and follows; Ctrl-C (SIGINT) detaches it.
	cmd := exec.CommandContext(ctx, fleetplanBin, "apply", "-auto-approve", file)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 2*time.Minute, func() (bool, string) {
		return strings.Contains(out.String(), "CANARY"), "waiting for apply to follow the canary:\n" + out.String()
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if err != nil || !strings.Contains(out.String(), "Detached") || !strings.Contains(out.String(), "fleetplan status -watch "+app) {
		t.Fatalf("apply interrupted: %v\n%s", err, out.String())
	}

	// The rollout goes on without apply; kill the leader during a wave.
	testcluster.Eventually(t, 4*time.Minute, func() (bool, string) {
		s, err := readState(c, app)
		if err != nil || s == nil {
			return false, fmt.Sprintf("no state (%v)", err)
		}
		return s.Phase == "WAVE" && s.Step == "switching", fmt.Sprintf("waiting for a wave's switching, at %s/%s", s.Phase, s.Step)
	})
	lh, err := health(leaderAddr)
	if err != nil || lh.Role != "leader" {
		t.Fatalf("the leader at %s: %+v %v", leaderAddr, lh, err)
	}
	if err := syscall.Kill(lh.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the leader (pid %d): %v", lh.PID, err)
	}
	killed := time.Now()
	// The standby, or the killed instance restarted by Nomad (also a
	// standby then), takes over: the first record of an instance other
	// than the killed one.
	var first time.Time
	testcluster.Eventually(t, 90*time.Second, func() (bool, string) {
		for _, rec := range auditRecords(t, ctx, app) {
			if rec.Time.After(killed) && strings.Contains(rec.Actor, "via fleetplan-controller") && !strings.Contains(rec.Actor, lh.Instance) {
				first = rec.Time
				return true, ""
			}
		}
		return false, "no action of another controller instance than " + lh.Instance + " yet"
	})
	t.Logf("measured: leader SIGKILL -> standby's first recorded action: %s (session TTL 10s, lock delay 1s)", first.Sub(killed).Round(time.Millisecond))
	// The takeover came from a standby destroying the dead leader's
	// session (not from Consul expiring it).
	var reaps []reapRecord
	testcluster.Eventually(t, 30*time.Second, func() (bool, string) {
		reaps = reapsAfter(t, ctx, killed, lh.Instance)
		return len(reaps) > 0 && !strings.Contains(reaps[0].Actor, lh.Instance),
			fmt.Sprintf("no audit record of another instance destroying the session of %s: %+v", lh.Instance, reaps)
	})
	t.Logf("measured: leader SIGKILL -> its session destroyed by %s: %s (%s)", reaps[0].Actor, reaps[0].Time.Sub(killed).Round(time.Millisecond), reaps[0].Detail)

	testcluster.Eventually(t, 6*time.Minute, func() (bool, string) {
		s, err := readState(c, app)
		if err != nil || s == nil {
			return false, fmt.Sprintf("no state (%v)", err)
		}
		return s.Outcome != "", fmt.Sprintf("at %s/%s", s.Phase, s.Step)
	})
	s, _ := readState(c, app)
	if s.Outcome != "succeeded" {
		t.Fatalf("the rollout ended %s, want succeeded", s.Outcome)
	}
	waitFleet(t, c, app, s.Candidate, "1.0.0")
	st := fleetplan(t, ctx, "status", app)
	if !strings.Contains(st.stdout, "1.0.0") {
		t.Errorf("status after the takeover:\n%s", st.stdout)
	}
}
