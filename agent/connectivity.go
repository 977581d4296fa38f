package agent

import (
	"context"
	"fmt"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

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

// readNomadClient asks the device's Nomad client (its /v1/agent/self, then
// /v1/node/<id>, which the client forwards to the servers).
func readNomadClient(ctx context.Context, nc *nomadapi.Client, now func() time.Time) NomadClientState {
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
	node, _, err := nc.Nodes().Info(st.NodeID, (&nomadapi.QueryOptions{AllowStale: true}).WithContext(ctx))
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
	hb := fmt.Sprintf("last heartbeat %s ago", fmtAge(st.HeartbeatAge))
	var limits []string
	if heartbeatTimeout > 0 {
		limits = append(limits, "limit "+heartbeatTimeout.String())
		if st.HeartbeatAge >= heartbeatTimeout {
			status = worse(status, Critical)
			problems = append(problems, fmt.Sprintf("last heartbeat %s ago, at or above the heartbeat timeout %s", fmtAge(st.HeartbeatAge), heartbeatTimeout))
		}
	}
	if st.HeartbeatTTL > 0 {
		limits = append(limits, "TTL "+fmtAge(st.HeartbeatTTL))
		if heartbeatTimeout <= 0 && st.HeartbeatAge > st.HeartbeatTTL {
			status = worse(status, Warning)
			problems = append(problems, fmt.Sprintf("last heartbeat %s ago, older than its TTL %s", fmtAge(st.HeartbeatAge), fmtAge(st.HeartbeatTTL)))
		}
	}
	if heartbeatTimeout <= 0 {
		limits = append(limits, "no heartbeat timeout configured")
	}
	hb += " (" + strings.Join(limits, ", ") + ")"
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
	detail := fmt.Sprintf("node %s (%s) status %s, eligibility %s; %s; Nomad client %s answered in %s",
		st.NodeName, st.NodeID, st.Status, orNone(st.Eligibility), hb, nomadAddr, st.Took.Round(time.Millisecond))
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
