package checks

import (
	"slices"
	"strings"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// deviceHealthLocked is one device's health from the caches: computed
// again only when the device's node, its checks, or the allocations
// changed since it was last computed.
func (w *Watcher) deviceHealthLocked(jw *jobWatch, d scheduler.DeviceRef, key string) scheduler.DeviceHealth {
	return w.cachedLocked(jw, d, key).h
}

// cachedLocked is the device's cache entry, up to date.
func (w *Watcher) cachedLocked(jw *jobWatch, d scheduler.DeviceRef, key string) *cachedHealth {
	c := jw.cache[key]
	if c == nil {
		c = &cachedHealth{}
		jw.cache[key] = c
	} else if w.validLocked(c) {
		return c
	}
	w.fillLocked(jw, d, c, nil)
	return c
}

// validLocked reports whether a cache entry was computed from the caches
// as they are.
func (w *Watcher) validLocked(c *cachedHealth) bool {
	return c.nodesGen == w.nodesGen && c.allocGen == w.allocGen && c.epoch == w.cs.epoch && (c.nc == nil || c.nc.gen == c.checkGen)
}

// fillLocked computes a device's health into its cache entry; a slab
// (nil: none) provides the allocations.
func (w *Watcher) fillLocked(jw *jobWatch, d scheduler.DeviceRef, c *cachedHealth, slab *healthSlab) {
	name := d.Name
	if name == "" {
		name = w.nodes[d.ID].Name
	}
	nc := w.cs.byNode[name]
	var gen uint64
	if nc != nil {
		gen = nc.gen
	}
	h := w.computeHealthLocked(jw, d, nc, slab)
	*c = cachedHealth{nodesGen: w.nodesGen, allocGen: w.allocGen, epoch: w.cs.epoch, nc: nc, checkGen: gen, h: h}
}

// computeHealthLocked assembles one device's health from the caches; nc
// are its node's checks (nil: none, or looked up by the name found here);
// slab (nil: none) provides the health's allocation and check list.
func (w *Watcher) computeHealthLocked(jw *jobWatch, d scheduler.DeviceRef, nc *nodeChecks, slab *healthSlab) scheduler.DeviceHealth {
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
		h.Alloc = slab.alloc()
		*h.Alloc = scheduler.AllocHealth{ID: a.ID, Status: a.ClientStatus, Restarts: a.Restarts}
		if jw.view.Found {
			h.Alloc.Version = jw.view.Versions[a.JobVersion]
		}
	}

	// One pass over the node's checks: the node-level ones, the agent
	// services' and the slot's service checks of the allocation's own
	// instances only (a replaced allocation's instance must not speak for
	// the new one).
	var (
		nNode, nApp, nAgent int
		serfPassing         bool
	)
	if nc == nil && name != "" {
		nc = w.cs.byNode[name]
	}
	kind := func(c *checkInfo) int {
		switch {
		case c.ServiceID == "":
			return kindNode
		case w.isAgentService(c.ServiceName):
			return kindAgent
		case h.Alloc != nil && jw.follows(c) && instanceOf(c.ServiceID, h.Alloc.ID):
			return kindApp
		}
		return kindNone
	}
	var kinds [8]int
	var checks []checkInfo
	if nc != nil {
		checks = nc.checks
	}
	ks := kinds[:0]
	if len(checks) > len(kinds) {
		ks = make([]int, 0, len(checks))
	}
	for i := range checks {
		k := kind(&checks[i])
		ks = append(ks, k)
		switch k {
		case kindNode:
			nNode++
		case kindApp:
			nApp++
		case kindAgent:
			nAgent++
		}
	}
	if total := nNode + nApp + nAgent; total > 0 {
		h.Checks = slab.checkList(total)
	}
	// The node's checks first, then the application's, then the agent's:
	// each group ordered by service, service ID and check ID so that the
	// result does not depend on the order of the answer.
	for _, group := range []int{kindNode, kindApp, kindAgent} {
		from := len(h.Checks)
		var members []*checkInfo
		var buf [8]*checkInfo
		members = buf[:0]
		for i := range checks {
			if ks[i] == group {
				members = append(members, &checks[i])
			}
		}
		slices.SortFunc(members, compareChecks)
		for _, c := range members {
			cr := checkResult(*c)
			if group == kindNode && c.CheckID == contract.SerfHealthCheck {
				cr.Name, cr.Layer = contract.SerfHealthCheck, 1
				serfPassing = c.Status == consulapi.HealthPassing
			}
			h.Checks = append(h.Checks, cr)
		}
		part := h.Checks[from:]
		sortChecks(part)
		switch group {
		case kindApp:
			h.Version = w.versionOf(part)
			h.Metrics = metricsOf(part)
		case kindAgent:
			if h.Version == "" {
				h.Version = w.versionOf(part)
			}
		}
	}
	h.Online = known && node.Status == "ready" && serfPassing
	sortChecks(h.Checks)
	return h
}

// Kinds of a node's checks for a device's health.
const (
	kindNone = iota
	kindNode
	kindApp
	kindAgent
)

// compareChecks orders checks by service, service ID and check ID.
func compareChecks(a, b *checkInfo) int {
	if c := strings.Compare(a.ServiceName, b.ServiceName); c != 0 {
		return c
	}
	if c := strings.Compare(a.ServiceID, b.ServiceID); c != 0 {
		return c
	}
	return strings.Compare(a.CheckID, b.CheckID)
}

// follows reports whether a service check belongs to one of the job's
// services in its slot.
func (jw *jobWatch) follows(c *checkInfo) bool {
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

func checkResult(c checkInfo) scheduler.CheckResult {
	return scheduler.CheckResult{Name: c.Name, Layer: CheckLayer(c.Name), Status: c.Status, Output: c.Output}
}

func sortChecks(cs []scheduler.CheckResult) {
	less := func(a, b scheduler.CheckResult) int {
		if a.Layer != b.Layer {
			return a.Layer - b.Layer
		}
		return strings.Compare(a.Name, b.Name)
	}
	if slices.IsSortedFunc(cs, less) {
		return
	}
	slices.SortStableFunc(cs, less)
}

// versionOf is the version the first layer-3 check's output reports.
// Outputs repeat across a fleet (the same release answers the same
// body), so parsed outputs are remembered (a bounded memo).
func (w *Watcher) versionOf(cs []scheduler.CheckResult) string {
	for _, c := range cs {
		if c.Layer != 3 {
			continue
		}
		v, ok := w.versions[c.Output]
		if !ok {
			_, v, _ = ParseCheckOutput(c.Output)
			if len(w.versions) >= maxVersionMemo {
				clear(w.versions)
			}
			w.versions[c.Output] = v
		}
		if v != "" {
			return v
		}
	}
	return ""
}

// maxVersionMemo bounds the memo of parsed check outputs.
const maxVersionMemo = 4096

// metricsOf reads the device agent's measurements from the metrics record
// (contract.Metrics) of its layer-3 check output: no device is polled for
// them. An application that could not be measured gives none.
func metricsOf(cs []scheduler.CheckResult) *scheduler.Metrics {
	for _, c := range cs {
		if c.Layer != 3 || !strings.Contains(c.Output, contract.MetricsLinePrefix) {
			// Without the prefix there is no record (a cheap test:
			// ParseMetrics searches from the end).
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
		if v.leftover(a) {
			continue
		}
		if rank(a) == 0 && (a.DesiredStatus != "run" || (v.Found && a.JobVersion < v.Latest)) {
			continue
		}
		if !found || rank(a) > rank(best) || (rank(a) == rank(best) && a.CreateIndex > best.CreateIndex) {
			best, found = a, true
		}
	}
	return best, found
}

// leftover reports an allocation of an earlier incarnation of the job (a
// job purged and registered again: its versions start again at 0), which
// Nomad lists until it collects it: it says nothing about this one.
func (v jobView) leftover(a allocInfo) bool {
	return v.Found && v.CreateIndex > 0 && a.CreateIndex < v.CreateIndex
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
