package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
)

func TestConnectivityVerdict(t *testing.T) {
	ready := NomadClientState{
		NodeID: "6131aa3b", NodeName: "rpi-1", Status: "ready", Eligibility: "eligible",
		HeartbeatAge: 2100 * time.Millisecond, HeartbeatTTL: 9600 * time.Millisecond, Took: 4 * time.Millisecond,
	}
	with := func(f func(*NomadClientState)) NomadClientState { s := ready; f(&s); return s }
	for _, c := range []struct {
		name    string
		st      NomadClientState
		timeout time.Duration
		want    plugin.Status
		texts   []string
	}{
		{"ready", ready, 30 * time.Second, Passing, []string{
			"passing: Nomad node rpi-1 is ready and eligible\n",
			"node rpi-1 (6131aa3b) status ready, eligibility eligible; heartbeat timeout 30s; Nomad client http://127.0.0.3:4646 answered\n",
		}},
		{"client does not answer", NomadClientState{Err: errors.New("dial tcp 127.0.0.3:4646: connection refused")}, 30 * time.Second, Critical, []string{
			"critical: the Nomad client at http://127.0.0.3:4646 does not answer: dial tcp 127.0.0.3:4646: connection refused\n",
		}},
		{"servers unreachable", with(func(s *NomadClientState) { s.NodeErr = errors.New("No cluster leader") }), 30 * time.Second, Critical, []string{
			"but node 6131aa3b cannot be read from the servers through it: No cluster leader",
		}},
		{"down", with(func(s *NomadClientState) { s.Status = "down" }), 30 * time.Second, Critical, []string{
			`critical: node status is "down", not ready`,
		}},
		{"heartbeat at the timeout", with(func(s *NomadClientState) { s.HeartbeatAge = 30 * time.Second }), 30 * time.Second, Critical, []string{
			"critical: last heartbeat 30s ago, at or above the heartbeat timeout 30s",
		}},
		{"heartbeat under the timeout", with(func(s *NomadClientState) { s.HeartbeatAge = 29900 * time.Millisecond }), 30 * time.Second, Passing, nil},
		{"no timeout, older than the TTL", with(func(s *NomadClientState) { s.HeartbeatAge = 12 * time.Second }), 0, Warning, []string{
			"warning: last heartbeat 12s ago, older than its TTL 9.6s",
			"eligible; no heartbeat timeout configured; Nomad",
		}},
		{"draining and ineligible", with(func(s *NomadClientState) { s.Draining, s.Eligibility = true, "ineligible" }), 30 * time.Second, Warning, []string{
			"warning: node is draining; node is ineligible for scheduling",
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, out := ConnectivityVerdict(c.st, "http://127.0.0.3:4646", c.timeout)
			if st != c.want {
				t.Errorf("status = %s, want %s\n%s", st, c.want, out)
			}
			for _, s := range c.texts {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q:\n%s", s, out)
				}
			}
		})
	}
	if n := ConnectivityNotes(30 * time.Second); !strings.Contains(n, "at least 30s old") {
		t.Errorf("notes = %q", n)
	}
}
