package checks

import (
	"sort"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// deviceHealthLocked assembles one device's health from the caches.
func (w *Watcher) deviceHealthLocked(jw *jobWatch, d scheduler.DeviceRef) scheduler.DeviceHealth {
	nodeID, name := d.ID, d.Name
	node, known := w.nodes[nodeID]
	if !known && name != "" {
		if id, ok := w.nodeIDs[name]; ok {
			nodeID, node, known = id, w.nodes[id], true
		}
	}
	if name == "" && known {
		name = node.Name
	}

	var h scheduler.DeviceHealth
	serfPassing := false
	for _, c := range w.nodeChecks[name] {
		cr := checkResult(c)
		if c.CheckID == contract.SerfHealthCheck {
			cr.Name, cr.Layer = contract.SerfHealthCheck, 1
			serfPassing = c.Status == consulapi.HealthPassing
		}
		h.Checks = append(h.Checks, cr)
	}
	h.Online = known && node.Status == "ready" && serfPassing

	if a, ok := pickAlloc(jw.allocs[nodeID], jw.view); ok && nodeID != "" {
		h.Alloc = &scheduler.AllocHealth{ID: a.ID, Status: a.ClientStatus, Restarts: a.Restarts}
		if jw.view.Found {
			h.Alloc.Version = jw.view.Versions[a.JobVersion]
		}
	}

	// The slot's service checks, of the allocation's own instances only:
	// a replaced allocation's instance must not speak for the new one.
	var app []scheduler.CheckResult
	if h.Alloc != nil {
		svcs := make([]string, 0, len(jw.instances))
		for s := range jw.instances {
			svcs = append(svcs, s)
		}
		sort.Strings(svcs)
		for _, s := range svcs {
			for _, in := range jw.instances[s][name] {
				if !instanceOf(in.ServiceID, h.Alloc.ID) {
					continue
				}
				for _, c := range in.Checks {
					app = append(app, checkResult(c))
				}
			}
		}
	}
	sortChecks(app)
	h.Version = versionOf(app)
	h.Metrics = metricsOf(app)

	var agent []scheduler.CheckResult
	for _, s := range w.cfg.AgentServices {
		for _, in := range w.agent[s][name] {
			for _, c := range in.Checks {
				agent = append(agent, checkResult(c))
			}
		}
	}
	sortChecks(agent)
	if h.Version == "" {
		h.Version = versionOf(agent)
	}

	h.Checks = append(append(h.Checks, app...), agent...)
	sortChecks(h.Checks)
	return h
}

func checkResult(c checkInfo) scheduler.CheckResult {
	return scheduler.CheckResult{Name: c.Name, Layer: CheckLayer(c.Name), Status: c.Status, Output: c.Output}
}

func sortChecks(cs []scheduler.CheckResult) {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].Layer != cs[j].Layer {
			return cs[i].Layer < cs[j].Layer
		}
		return cs[i].Name < cs[j].Name
	})
}

// versionOf is the version the first layer-3 check's output reports.
func versionOf(cs []scheduler.CheckResult) string {
	for _, c := range cs {
		if c.Layer != 3 {
			continue
		}
		if _, v, ok := ParseCheckOutput(c.Output); ok && v != "" {
			return v
		}
	}
	return ""
}

// metricsOf reads the device agent's measurements from the metrics record
// (contract.Metrics) of its layer-3 check output: no device is polled for
// them. An application that could not be measured gives none.
func metricsOf(cs []scheduler.CheckResult) *scheduler.Metrics {
	for _, c := range cs {
		if c.Layer != 3 {
			continue
		}
		m, ok := contract.ParseMetrics(c.Output)
		if !ok || !m.Measured() {
			continue
		}
		out := &scheduler.Metrics{}
		if m.ErrorRate != nil {
			out.ErrorRate = *m.ErrorRate
		}
		if m.P95LatencyMS != nil {
			out.P95LatencyMS = *m.P95LatencyMS
		}
		if m.RSSMB != nil {
			out.MemoryMB = *m.RSSMB
		}
		if m.CPUPercent != nil {
			out.CPUPercent = *m.CPUPercent
		}
		return out
	}
	return nil
}

// pickAlloc chooses the allocation that speaks for a node: one that is
// meant to run and has not ended, else one that has not ended (being
// stopped), else the newest one that ended by itself (failed, or exited)
// in the job's latest version. Two kinds of ended allocations are left out
// because they say nothing about the candidate: those Nomad stopped on
// purpose (desired stop or evict: replaced, the device switched away, the
// job stopped), and those of an older job version, what remains of an
// earlier rollout that used this slot until Nomad collects it. Reading
// either as "complete" would fail a device that was just switched and
// whose new allocation is not placed yet.
func pickAlloc(as []allocInfo, v jobView) (allocInfo, bool) {
	rank := func(a allocInfo) int {
		live := a.ClientStatus == "pending" || a.ClientStatus == "running" || a.ClientStatus == "unknown"
		switch {
		case live && a.DesiredStatus == "run":
			return 2
		case live:
			return 1
		}
		return 0
	}
	var best allocInfo
	found := false
	for _, a := range as {
		if rank(a) == 0 && (a.DesiredStatus != "run" || (v.Found && a.JobVersion < v.Latest)) {
			continue
		}
		if !found || rank(a) > rank(best) || (rank(a) == rank(best) && a.CreateIndex > best.CreateIndex) {
			best, found = a, true
		}
	}
	return best, found
}

// instanceOf reports whether a Consul service instance belongs to the
// allocation. Nomad names its registrations _nomad-task-<alloc ID>-...;
// other registrations are taken as they are.
func instanceOf(serviceID, allocID string) bool {
	if !strings.HasPrefix(serviceID, contract.NomadTaskServicePrefix) {
		return true
	}
	return strings.Contains(serviceID, allocID)
}
