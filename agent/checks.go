package agent

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
)

// IDs of the checks the agent registers (their names are in contract).
const (
	// CheckIDPrefix starts the ID of every check the agent owns; the
	// agent deregisters any check with this prefix it does not want.
	CheckIDPrefix = "fleetplan-L"

	// CheckIDConnectivity and CheckIDSystem are the node checks' IDs.
	CheckIDConnectivity = "fleetplan-L1-connectivity"
	CheckIDSystem       = "fleetplan-L2-system"
)

// Probe endpoint paths.
const (
	PathConnectivity = "/v1/probe/connectivity"
	PathSystem       = "/v1/probe/system"
	PathApplication  = "/v1/probe/application"
	PathFunctional   = "/v1/probe/functional"
	PathMetrics      = "/v1/metrics"
	PathStatus       = "/v1/status"
	PathHealth       = "/v1/health"
)

// ServiceCheckID is the ID of an instance's layer 3 or 4 check:
// fleetplan-L<layer>-<service ID>.
func ServiceCheckID(layer int, serviceID string) string {
	return CheckIDPrefix + strconv.Itoa(layer) + "-" + serviceID
}

// allocIDOf returns the allocation ID in a Nomad service ID, or "".
func allocIDOf(serviceID string) string {
	rest, ok := strings.CutPrefix(serviceID, contract.NomadTaskServicePrefix)
	if !ok || len(rest) < 36 {
		return ""
	}
	id := rest[:36]
	if strings.Count(id, "-") != 4 || (len(rest) > 36 && rest[36] != '-') {
		return ""
	}
	return id
}

// FindInstances picks the fleetplan-managed instances out of the local
// Consul agent's services: tagged fleetplan-slot=<slot> and carrying the
// Nomad-managed layer 3 check (so the service of the health port, not
// another port of the same group). appOf names an instance's application.
// The result is sorted by service ID.
func FindInstances(services map[string]*consulapi.AgentService, checks map[string]*consulapi.AgentCheck, appOf func(*consulapi.AgentService) string) []Instance {
	health := map[string]bool{}
	for _, c := range checks {
		if c.Name == contract.CheckApplication && c.ServiceID != "" {
			health[c.ServiceID] = true
		}
	}
	var out []Instance
	for id, s := range services {
		slot, version := "", ""
		for _, t := range s.Tags {
			if v, ok := strings.CutPrefix(t, contract.TagSlot); ok {
				slot = v
			}
			if v, ok := strings.CutPrefix(t, contract.TagVersion); ok {
				version = v
			}
		}
		if slot == "" || !health[id] {
			continue
		}
		out = append(out, Instance{
			ServiceID: id,
			Service:   s.Service,
			App:       appOf(s),
			Address:   s.Address,
			Port:      s.Port,
			Slot:      slot,
			Version:   version,
		})
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ServiceID, b.ServiceID) })
	return out
}

// checkPlan is what the agent wants registered on its Consul agent.
type checkPlan struct {
	// Base is the URL Consul calls the agent at: http://host:port.
	Base             string
	Interval         time.Duration
	Timeout          time.Duration
	Thresholds       Thresholds
	HeartbeatTimeout time.Duration
	// ExecAllow gives the timeouts of exec probes.
	ExecAllow ExecAllowList
}

// DesiredChecks are the check registrations for the node and its
// instances, by check ID.
func (p checkPlan) DesiredChecks(insts []Instance, configs map[string]*AppConfig) map[string]*consulapi.AgentCheckRegistration {
	out := map[string]*consulapi.AgentCheckRegistration{}
	add := func(id, name, serviceID, path, notes string, interval, timeout time.Duration) {
		out[id] = &consulapi.AgentCheckRegistration{
			ID:        id,
			Name:      name,
			ServiceID: serviceID,
			Notes:     notes,
			AgentServiceCheck: consulapi.AgentServiceCheck{
				HTTP:     p.Base + path,
				Method:   "GET",
				Interval: interval.String(),
				Timeout:  timeout.String(),
			},
		}
	}
	add(CheckIDConnectivity, contract.CheckConnectivity, "", PathConnectivity, ConnectivityNotes(p.HeartbeatTimeout), p.Interval, p.Timeout)
	add(CheckIDSystem, contract.CheckSystem, "", PathSystem, SystemNotes(p.Thresholds), p.Interval, p.Timeout)
	for _, in := range insts {
		q := "?service=" + url.QueryEscape(in.ServiceID)
		cfg := configs[in.App]
		interval, fetch := p.Interval, DefaultFetchTimeout
		if cfg != nil && cfg.Interval > 0 {
			interval = cfg.Interval.D()
		}
		if cfg != nil && cfg.Timeout > 0 {
			fetch = cfg.Timeout.D()
		}
		add(ServiceCheckID(3, in.ServiceID), contract.CheckVersionMetrics, in.ServiceID, PathApplication+q,
			ApplicationNotes(in, cfg), interval, applicationCheckTimeout(fetch))
		if cfg != nil && cfg.Functional != nil && cfg.Functional.Probe != "" {
			fi := p.Interval
			if cfg.Functional.Interval > 0 {
				fi = cfg.Functional.Interval.D()
			}
			add(ServiceCheckID(4, in.ServiceID), contract.CheckFunctional, in.ServiceID, PathFunctional+q,
				FunctionalNotes(cfg.Functional), fi, p.ExecAllow.checkTimeout(cfg.Functional))
		}
	}
	return out
}

// DefaultFetchTimeout bounds each request to an application whose policy
// gives no health timeout.
const DefaultFetchTimeout = 2 * time.Second

// applicationCheckTimeout is the Consul timeout of the layer 3 agent check,
// which fetches two endpoints of fetch each.
func applicationCheckTimeout(fetch time.Duration) time.Duration { return 2*fetch + time.Second }

// ApplicationNotes is the layer 3 agent check's Notes.
func ApplicationNotes(in Instance, cfg *AppConfig) string {
	path, expect, source := DefaultHealthPath, true, "no agent config for this application yet: defaults"
	if cfg != nil {
		path, expect, source = cfg.HealthPath, cfg.ExpectVersion, "policy of "+cfg.App
	}
	ver := "the reported version is not checked"
	if expect {
		ver = fmt.Sprintf("a version other than %s fails", contract.VersionTag(in.Version))
	}
	triggers := "no metric trigger"
	if cfg != nil {
		var ts []string
		if cfg.MaxErrorRate > 0 {
			ts = append(ts, fmt.Sprintf("max_error_rate %g", cfg.MaxErrorRate))
		}
		if cfg.MaxP95LatencyIncreasePercent > 0 {
			ts = append(ts, fmt.Sprintf("max_p95_latency_increase_percent %g over this device's pre-switch baseline", cfg.MaxP95LatencyIncreasePercent))
		}
		if cfg.TrendHorizon > 0 {
			ts = append(ts, "resource trends over "+cfg.TrendHorizon.String())
		}
		if len(ts) > 0 {
			triggers = "metric triggers judged here: " + strings.Join(ts, ", ")
		}
	}
	return fmt.Sprintf("fleetplan device agent, layer 3: GET %s on the instance: healthy passes, degraded warns, unhealthy fails; %s; %s (a missing figure warns). The numbers are in the device summary in Consul KV (%s).",
		path, ver, triggers, source)
}

// fingerprint identifies a registration's definition (not its status).
func fingerprint(r *consulapi.AgentCheckRegistration) string {
	c := *r
	c.Status = ""
	b, _ := json.Marshal(c)
	return string(b)
}
