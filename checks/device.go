package checks

import (
	"sort"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// deviceHealthLocked is one device's health from the caches: computed
// again only when the device's node, its checks, or the allocations
// changed since it was last computed.
func (w *Watcher) deviceHealthLocked(jw *jobWatch, d scheduler.DeviceRef, key string) scheduler.DeviceHealth {
	name := d.Name
	if name == "" {
		name = w.nodes[d.ID].Name
	}
	gen := w.cs.nodeGen(name)
	if c, ok := jw.cache[key]; ok && c.nodesGen == w.nodesGen && c.allocGen == w.allocGen && c.checkGen == gen {
		return c.h
	}
	h := w.computeHealthLocked(jw, d)
	jw.cache[key] = cachedHealth{nodesGen: w.nodesGen, allocGen: w.allocGen, checkGen: gen, h: h}
	return h
}

// computeHealthLocked assembles one device's health from the caches.
func (w *Watcher) computeHealthLocked(jw *jobWatch, d scheduler.DeviceRef) scheduler.DeviceHealth {
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
	if a, ok := pickAlloc(jw.allocs[nodeID], jw.view); ok && nodeID != "" {
		h.Alloc = &scheduler.AllocHealth{ID: a.ID, Status: a.ClientStatus, Restarts: a.Restarts}
		if jw.view.Found {
			h.Alloc.Version = jw.view.Versions[a.JobVersion]
		}
	}

	var nodeChecks, app, agent []checkInfo
	if nc := w.cs.byNode[name]; nc != nil && name != "" {
		for _, c := range nc.checks {
			switch {
			case c.ServiceID == "":
				nodeChecks = append(nodeChecks, c)
			case w.isAgentService(c.ServiceName):
				agent = append(agent, c)
			case h.Alloc != nil && jw.follows(c) && instanceOf(c.ServiceID, h.Alloc.ID):
				// The slot's service checks, of the allocation's own
				// instances only: a replaced allocation's instance must
				// not speak for the new one.
				app = append(app, c)
			}
		}
	}
	serfPassing := false
	for _, c := range orderChecks(nodeChecks) {
		cr := checkResult(c)
		if c.CheckID == contract.SerfHealthCheck {
			cr.Name, cr.Layer = contract.SerfHealthCheck, 1
			serfPassing = c.Status == consulapi.HealthPassing
		}
		h.Checks = append(h.Checks, cr)
	}
	h.Online = known && node.Status == "ready" && serfPassing

	appResults := results(orderChecks(app))
	sortChecks(appResults)
	h.Version = versionOf(appResults)
	h.Metrics = metricsOf(appResults)

	agentResults := results(orderChecks(agent))
	sortChecks(agentResults)
	if h.Version == "" {
		h.Version = versionOf(agentResults)
	}

	h.Checks = append(append(h.Checks, appResults...), agentResults...)
	sortChecks(h.Checks)
	return h
}

// follows reports whether a service check belongs to one of the job's
// services in its slot.
func (jw *jobWatch) follows(c checkInfo) bool {
	found := false
	for _, s := range jw.view.Services {
		if s == c.ServiceName {
			found = true
			break
		}
	}
	if !found {
		return false
	}
	tag := contract.SlotTag(jw.slot)
	for _, t := range c.ServiceTags {
		if t == tag {
			return true
		}
	}
	return false
}

func (w *Watcher) isAgentService(name string) bool {
	for _, s := range w.cfg.AgentServices {
		if s == name {
			return true
		}
	}
	return false
}

// orderChecks sorts checks by service, service ID and check ID, so that
// the health of a device does not depend on map order.
func orderChecks(cs []checkInfo) []checkInfo {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.ServiceName != b.ServiceName {
			return a.ServiceName < b.ServiceName
		}
		if a.ServiceID != b.ServiceID {
			return a.ServiceID < b.ServiceID
		}
		return a.CheckID < b.CheckID
	})
	return cs
}

func results(cs []checkInfo) []scheduler.CheckResult {
	if len(cs) == 0 {
		return nil
	}
	out := make([]scheduler.CheckResult, 0, len(cs))
	for _, c := range cs {
		out = append(out, checkResult(c))
	}
	return out
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
		if !ok {
			continue
		}
		if out := schedulerMetrics(&m); out != nil {
			return out
		}
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
