package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/plugin"
)

// NomadClientState is what the device's own Nomad client says about itself
// and what the servers say about its node.
type NomadClientState struct {
	// Err is set when the client did not answer; the other fields are
	// then empty.
	Err error
	// NodeErr is set when the client answered but the node could not be
	// read from the servers through it.
	NodeErr  error
	NodeID   string
	NodeName string
	Status   string // Nomad's node status: ready, down, initializing, disconnected
	// Eligibility is the scheduling eligibility; Draining is true during
	// a drain.
	Eligibility string
	Draining    bool
	// HeartbeatAge is the time since the client's last heartbeat to the
	// servers; HeartbeatTTL the TTL the servers gave it. Zero when the
	// client does not report them.
	HeartbeatAge time.Duration
	HeartbeatTTL time.Duration
	Took         time.Duration
}

// readNomadClient asks the device's Nomad client its /v1/agent/self (a
// local answer: no server request) and takes the node's status from the
// node follower (one blocking query on /v1/node/<id>, which returns only
// when the node changes); until the follower has an answer, it reads the
// node once.
func readNomadClient(ctx context.Context, nc *nomadapi.Client, nf *nodeFollower, now func() time.Time) NomadClientState {
	start := now()
	var self nomadapi.AgentSelf
	if _, err := nc.Raw().Query("/v1/agent/self", &self, (&nomadapi.QueryOptions{}).WithContext(ctx)); err != nil {
		return NomadClientState{Err: err, Took: now().Sub(start)}
	}
	st := NomadClientState{}
	client := self.Stats["client"]
	if client == nil || client["node_id"] == "" {
		st.Err = fmt.Errorf("the Nomad agent is not a client (no client stats)")
		st.Took = now().Sub(start)
		return st
	}
	st.NodeID = client["node_id"]
	st.HeartbeatAge, _ = time.ParseDuration(client["last_heartbeat"])
	st.HeartbeatTTL, _ = time.ParseDuration(client["heartbeat_ttl"])
	node, err, ok := nf.get(st.NodeID)
	if !ok {
		node, _, err = nc.Nodes().Info(st.NodeID, (&nomadapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	}
	st.Took = now().Sub(start)
	if err != nil {
		st.NodeErr = err
		return st
	}
	st.NodeName, st.Status = node.Name, node.Status
	st.Eligibility = node.SchedulingEligibility
	st.Draining = node.DrainStrategy != nil || node.Drain
	return st
}

// ConnectivityVerdict judges the Nomad client's state (layer 1): critical
// when the client does not answer, the servers cannot be reached through
// it, the node is not ready, or the last heartbeat is at least
// heartbeatTimeout old (when known); a warning when the node is draining
// or ineligible, or (with no timeout known) the last heartbeat is older
// than its TTL.
func ConnectivityVerdict(st NomadClientState, nomadAddr string, heartbeatTimeout time.Duration) (plugin.Status, string) {
	if st.Err != nil {
		return Critical, oneLine(fmt.Sprintf("critical: the Nomad client at %s does not answer: %v", nomadAddr, st.Err)) + "\n"
	}
	if st.NodeErr != nil {
		return Critical, oneLine(fmt.Sprintf("critical: the Nomad client at %s answered (last heartbeat %s ago) but node %s cannot be read from the servers through it: %v",
			nomadAddr, fmtAge(st.HeartbeatAge), st.NodeID, st.NodeErr)) + "\n"
	}
	status := Passing
	var problems []string
	if st.Status != nomadapi.NodeStatusReady {
		status = Critical
		problems = append(problems, fmt.Sprintf("node status is %q, not ready", st.Status))
	}
	var limits []string
	if heartbeatTimeout > 0 {
		limits = append(limits, "heartbeat timeout "+heartbeatTimeout.String())
		if st.HeartbeatAge >= heartbeatTimeout {
			status = worse(status, Critical)
			problems = append(problems, fmt.Sprintf("last heartbeat %s ago, at or above the heartbeat timeout %s", fmtAge(st.HeartbeatAge), heartbeatTimeout))
		}
	}
	if st.HeartbeatTTL > 0 {
		if heartbeatTimeout <= 0 && st.HeartbeatAge > st.HeartbeatTTL {
			status = worse(status, Warning)
			problems = append(problems, fmt.Sprintf("last heartbeat %s ago, older than its TTL %s", fmtAge(st.HeartbeatAge), fmtAge(st.HeartbeatTTL)))
		}
	}
	if heartbeatTimeout <= 0 {
		limits = append(limits, "no heartbeat timeout configured")
	}
	if st.Draining {
		status = worse(status, Warning)
		problems = append(problems, "node is draining")
	}
	if st.Eligibility != "" && st.Eligibility != nomadapi.NodeSchedulingEligible {
		status = worse(status, Warning)
		problems = append(problems, fmt.Sprintf("node is %s for scheduling", st.Eligibility))
	}
	summary := fmt.Sprintf("passing: Nomad node %s is %s and %s", st.NodeName, st.Status, orNone(st.Eligibility))
	if len(problems) > 0 {
		summary = fmt.Sprintf("%s: %s", status, strings.Join(problems, "; "))
	}
	// No timing (the heartbeat's age, the answer's time) in the output
	// unless it is the problem: the output must not change while the
	// verdict does not.
	detail := fmt.Sprintf("node %s (%s) status %s, eligibility %s; %s; Nomad client %s answered",
		st.NodeName, st.NodeID, st.Status, orNone(st.Eligibility), strings.Join(limits, ", "), nomadAddr)
	return status, oneLine(summary) + "\n" + oneLine(detail) + "\n"
}

// ConnectivityNotes is the layer 1 check's Notes.
func ConnectivityNotes(heartbeatTimeout time.Duration) string {
	limit := "older than its TTL warns (no heartbeat_timeout configured)"
	if heartbeatTimeout > 0 {
		limit = "at least " + heartbeatTimeout.String() + " old (the policy's connectivity.heartbeat_timeout) fails"
	}
	return "fleetplan device agent, layer 1: the device's Nomad client must answer and the servers must report its node ready; a last heartbeat " + limit + "; draining or ineligible warns."
}

func fmtAge(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}

// nodeFollower keeps the device's Nomad node as the servers last
// described it, from one blocking query (followNode).
type nodeFollower struct {
	mu   sync.Mutex
	id   string
	node *nomadapi.Node
	err  error
}

// get returns the node's last state; ok is false until the follower has
// an answer for that node ID.
func (f *nodeFollower) get(id string) (*nomadapi.Node, error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.id != id || (f.node == nil && f.err == nil) {
		return nil, nil, false
	}
	return f.node, f.err, true
}

func (f *nodeFollower) set(id string, n *nomadapi.Node, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.id != id {
		f.id, f.node = id, nil
	}
	f.err = err
	if n != nil {
		f.node = n
	}
}

// followNode learns the node ID from the local Nomad client, then follows
// the node with a blocking query until ctx ends: one server request per
// node change (or per WaitTime), instead of one per check interval.
func (a *Agent) followNode(ctx context.Context, log hclog.Logger) {
	var id string
	for failures := 1; id == ""; failures++ {
		var self nomadapi.AgentSelf
		_, err := a.nomad.Raw().Query("/v1/agent/self", &self, (&nomadapi.QueryOptions{}).WithContext(ctx))
		if err == nil && self.Stats["client"] != nil {
			id = self.Stats["client"]["node_id"]
		}
		if id != "" {
			break
		}
		d := blocking.Backoff(failures, a.cfg.Timing.BackoffBase, a.cfg.Timing.BackoffMax)
		log.Debug("the Nomad client does not name its node yet", "error", err, "retry_in", d)
		if blocking.Sleep(ctx, d) != nil {
			return
		}
	}
	follow(ctx, log, a.cfg.Timing, func(ctx context.Context, waitIndex uint64) (uint64, error) {
		q := (&nomadapi.QueryOptions{AllowStale: true, WaitIndex: waitIndex, WaitTime: a.cfg.Timing.WaitTime}).WithContext(ctx)
		n, meta, err := a.nomad.Nodes().Info(id, q)
		if err != nil {
			if ctx.Err() == nil {
				a.nodeSt.set(id, nil, err)
			}
			return 0, fmt.Errorf("following Nomad node %s through the local client: %w", id, err)
		}
		a.nodeSt.set(id, n, nil)
		return meta.LastIndex, nil
	}, func() {})
}
