package registry

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Diff is the registry sync: it compares the registry (current, keyed by
// Nomad node ID) with one scan of Nomad and Consul (obs), updates current in
// place to the next registry and returns it (a nil current: a new map) with
// the events that lead to it, sorted by device. Callers that still need the
// registry as it was pass a copy (maps.Clone). next shares the Meta and
// Apps maps of current and obs.
//
// Updating in place is what makes the sync of a large fleet cheap: a
// scheduler.Device is too large for a map to hold it inline, so building a
// new map cost one allocation (and its collection) per device and scan;
// now an unchanged device costs its lookups only.
//
// A device's status follows from what the two sides say:
//
//	Nomad            Consul (serfHealth)   status
//	ready            passing or warning    ok
//	ready            critical or none      offline   (health cannot be observed)
//	down, disconn.   any, or no node       offline   (unreachable for deploys)
//	ready            no node of that name  discrepancy
//	no node          passing or warning    discrepancy
//	no node          critical              offline if the registry knew it as a
//	                                       Nomad node, else discrepancy
//	no node          no node               offline (kept: capabilities, heartbeat)
//
// So a discrepancy is only raised when one side does not know a node at all
// and the side that does says it is alive; a node down on the side that knows
// it is offline. A node only Consul knows has no node ID: it is keyed by
// scheduler.ConsulOnlyPrefix + name, stays a discrepancy as long as Consul
// lists it, is folded into the Nomad node's entry when Nomad registers the
// name, and is removed when Consul no longer lists it either.
//
// Rules that persist across scans:
//   - quarantined is sticky: the status and reason stay, while the Nomad and
//     Consul fields, capabilities and heartbeat are still updated;
//   - Resolved (set by `fleetplan registry resolve`) is kept until the device
//     is ok again (both sides agree), then cleared, with a
//     discrepancy-cleared event;
//   - capabilities are only taken from a node that is ready, so an offline
//     device keeps the ones it last reported; LastHeartbeat only moves while
//     the device answers on every side that knows it;
//   - a registry device whose name Nomad now lists under another node ID (a
//     re-registered node) is removed; its quarantine, if any, carries over to
//     the new node.
//
// Events: added (then the status event too when the new device is not ok),
// offline, online (offline -> ok), discrepancy (entering one, or its reason
// changing), discrepancy-cleared (discrepancy -> ok), capabilities-changed
// (node class or capabilities differ), removed.
//
// Two Nomad nodes claiming one node ID (which Nomad does not do) are both
// settled, the one met second from the entry the first one left, so that
// which one's entry stays, and the second one's events, depend on the
// map's order.
func Diff(current map[string]scheduler.Device, obs scheduler.Observed, now time.Time) (map[string]scheduler.Device, []scheduler.RegistryEvent) {
	next, events, _, _ := diffWith(current, obs, now, nil)
	return next, events
}

// settleHook sees each next entry before it is stored: old is current's
// entry under the same key when known; it returns the entry to store. It
// runs on the goroutine that called diffWith and must not modify current.
type settleHook func(key string, old scheduler.Device, known bool, d scheduler.Device) scheduler.Device

// pipelineMin is the number of Nomad nodes from which the diff walks
// Nomad's and Consul's nodes on a second goroutine while the calling one
// settles them (on a large fleet the diff waits on memory, two cores halve
// that); a variable so that tests cover both paths.
var pipelineMin = 8192

// diffWith is Diff calling hook (when not nil) on every next entry once;
// it also returns the keys of current that next no longer has (deleted
// from it), and reports false when a key was settled twice (two Nomad
// nodes claiming one node ID), after which the hook's view is not next's.
func diffWith(current map[string]scheduler.Device, obs scheduler.Observed, now time.Time, hook settleHook) (map[string]scheduler.Device, []scheduler.RegistryEvent, []string, bool) {
	if current == nil {
		current = make(map[string]scheduler.Device, len(obs.Nomad)+len(obs.Consul))
	}
	r := registryDiff{current: current, obs: obs, now: now, hook: hook}
	if len(obs.Nomad) >= pipelineMin && runtime.GOMAXPROCS(0) > 1 {
		r.scanNomadPipelined()
	} else {
		r.scanNomad()
	}
	r.settleClaims()
	if r.handledCurrent < len(current) || r.consulKeyClaimed {
		// Some registry devices are not (or not only) Nomad nodes of the
		// same ID: Consul-only entries may have to be merged.
		r.mergeConsulOnly()
	}
	r.settleFresh()
	r.scanConsulOnly()
	if r.handledCurrent < len(current) {
		r.scanGone()
	}
	removed := r.apply()
	slices.SortStableFunc(r.events, func(a, b scheduler.RegistryEvent) int { return strings.Compare(a.Device, b.Device) })
	return current, r.events, removed, !r.resettled
}

// registryDiff is one diff. current is only written in two ways, so that
// every step reads the registry as it was where it matters: scanNomad
// stores the entries of the nodes it owns (see ownedBy; the common case)
// at once, and every other entry waits in pending, applied (with the
// removals) once every step is done. An owned entry keeps its name and a
// quarantined one its status, reason and key, which is all later steps
// read of it.
type registryDiff struct {
	current map[string]scheduler.Device
	obs     scheduler.Observed
	now     time.Time
	events  []scheduler.RegistryEvent
	// pending holds the next entries not stored yet.
	pending map[string]scheduler.Device
	// removed holds current keys that next drops (besides the consumed
	// ones that got no entry).
	removed []string
	// consumed holds current keys folded into another key.
	consumed map[string]struct{}
	// byName maps node names to current keys that are Nomad node IDs; built
	// on first use (only new or Consul-only nodes need it).
	byName map[string]string
	// quarantinedByName maps names to the keys of quarantined current
	// devices; built on first use.
	quarantinedByName map[string]string
	// nomadIDs is the set of node IDs Nomad lists; built on first use.
	nomadIDs map[string]struct{}
	// handledCurrent counts the current keys that have their next entry
	// or were consumed; when it reaches len(current), no current device
	// is left for scanGone.
	handledCurrent int
	hook           settleHook
	// resettled is set when a key got its next entry twice.
	resettled bool
	// consulMatched counts the Consul nodes scanNomad met; fresh are the
	// nodes it found new, claims the known ones it does not own.
	consulMatched int
	fresh         []freshNode
	claims        []freshNode
	// consulKeyClaimed is set when a Nomad node ID is a Consul-only key
	// of current (absurd, but then mergeConsulOnly must look).
	consulKeyClaimed bool
}

// ownedBy reports whether the Nomad node listed as name (nn, Name already
// defaulted to name) owns its registry entry prev under key: the registry
// knows the node ID under the same name. No two nodes own one key (they
// would share a name), and settling keeps the name.
func ownedBy(name, key string, nn *scheduler.NomadNode, prev *scheduler.Device) bool {
	return prev.Name == name && nn.Name == name && !strings.HasPrefix(key, scheduler.ConsulOnlyPrefix)
}

// owned reports whether scanNomad stored the entry of key (d, its entry in
// current) as its node's owner.
func (r *registryDiff) owned(key string, d *scheduler.Device) bool {
	nn, ok := r.obs.Nomad[d.Name]
	if !ok {
		return false
	}
	if nn.Name == "" {
		nn.Name = d.Name
	}
	return nomadKey(d.Name, &nn) == key && ownedBy(d.Name, key, &nn, d)
}

// stored reports whether key has its next entry already.
func (r *registryDiff) stored(key string) bool {
	if _, ok := r.pending[key]; ok {
		return true
	}
	d, ok := r.current[key]
	return ok && r.owned(key, &d)
}

// put sets the next entry of key (but for owned entries, see storeOwned);
// fromCurrent tells whether key is a key of current (for handledCurrent,
// counted once per key), old its entry there.
func (r *registryDiff) put(key string, d scheduler.Device, fromCurrent bool, old *scheduler.Device) {
	if r.hook != nil {
		var prev scheduler.Device
		if fromCurrent {
			prev = *old
		}
		d = r.hook(key, prev, fromCurrent, d)
	}
	dup := fromCurrent && r.stored(key)
	if !fromCurrent {
		_, dup = r.pending[key]
	}
	if r.pending == nil {
		r.pending = map[string]scheduler.Device{}
	}
	r.pending[key] = d
	if dup {
		r.resettled = true
		return
	}
	if fromCurrent {
		if _, consumed := r.consumed[key]; !consumed {
			r.handledCurrent++
		}
	}
}

// storeOwned stores the next entry of an owned key at once.
func (r *registryDiff) storeOwned(key string, d scheduler.Device, old *scheduler.Device) {
	if r.hook != nil {
		d = r.hook(key, *old, true, d)
	}
	r.current[key] = d
	r.handledCurrent++ // once: no other node owns key, and it is no Consul-only key
}

// apply stores the pending entries and drops the removed and consumed
// keys; it returns the keys dropped.
func (r *registryDiff) apply() []string {
	removed := r.removed
	for k := range r.consumed {
		if !r.stored(k) {
			removed = append(removed, k)
		}
	}
	for _, k := range removed {
		delete(r.current, k)
	}
	for k, d := range r.pending {
		r.current[k] = d
	}
	return removed
}

// nomadKey is the registry key of the Nomad node nn listed as name.
func nomadKey(name string, nn *scheduler.NomadNode) string {
	if nn.ID == "" {
		return "nomad:" + name // Nomad always sets an ID; be safe anyway.
	}
	return nn.ID
}

// scanNomad settles every node Nomad lists that the registry knows under
// its node ID and name, and collects the others in fresh and claims.
func (r *registryDiff) scanNomad() {
	for name, nn := range r.obs.Nomad {
		c, hasConsul := r.obs.Consul[name]
		if hasConsul {
			r.consulMatched++
		}
		r.settleNomad(name, &nn, &c, hasConsul)
	}
}

// settleNomad settles one node Nomad lists as name (c its Consul node when
// hasConsul), or collects it in fresh or claims.
func (r *registryDiff) settleNomad(name string, nn *scheduler.NomadNode, c *scheduler.ConsulNode, hasConsul bool) {
	if nn.Name == "" {
		nn.Name = name
	}
	key := nomadKey(name, nn)
	prev, known := r.current[key]
	if !known || !ownedBy(name, key, nn, &prev) {
		// A new node is settled once every known one is, when it is
		// clear whether it can replace a quarantined device; a node
		// that claims another name's entry, once every owned one is.
		f := freshNode{name: name, key: key, nn: *nn, cn: *c, hasConsul: hasConsul}
		if known {
			r.claims = append(r.claims, f)
		} else {
			r.fresh = append(r.fresh, f)
		}
		return
	}
	var cn *scheduler.ConsulNode
	if hasConsul {
		cn = c
	}
	r.storeOwned(key, r.settle(&r.events, key, prev, true, true, nn, cn, nil), &prev)
}

// settleClaims settles the known nodes scanNomad met that do not own their
// entry (renamed, or two nodes claiming one node ID).
func (r *registryDiff) settleClaims() {
	for i := range r.claims {
		f := &r.claims[i]
		if strings.HasPrefix(f.key, scheduler.ConsulOnlyPrefix) {
			r.consulKeyClaimed = true
		}
		var cn *scheduler.ConsulNode
		if f.hasConsul {
			cn = &f.cn
		}
		prev := r.current[f.key]
		r.put(f.key, r.settle(&r.events, f.key, prev, true, true, &f.nn, cn, nil), true, &prev)
	}
}

// nomadItem is a node scanNomadPipelined's second goroutine met, with its
// Consul node.
type nomadItem struct {
	name      string
	nn        scheduler.NomadNode
	cn        scheduler.ConsulNode
	hasConsul bool
}

// scanNomadPipelined is scanNomad on two goroutines: a second one walks
// Nomad's nodes and looks each up in Consul's (it only reads obs), this
// one does the rest (the registry side, settling, storing, the hook), so
// that the two halves of the memory-bound work overlap. The result is
// scanNomad's: the order in which nodes are met does not matter (Nomad's
// map has none).
func (r *registryDiff) scanNomadPipelined() {
	matched := 0 // written by the walker, read once pipeline returned
	pipeline(func(emit func(nomadItem)) {
		for name, nn := range r.obs.Nomad {
			cn, ok := r.obs.Consul[name]
			if ok {
				matched++
			}
			emit(nomadItem{name: name, nn: nn, cn: cn, hasConsul: ok})
		}
	}, func(it *nomadItem) {
		r.settleNomad(it.name, &it.nn, &it.cn, it.hasConsul)
	})
	r.consulMatched += matched
}

// mergeConsulOnly folds the Consul-only entries of current into the Nomad
// nodes of their names: the entry is removed when the registry knows the
// Nomad node already, else it becomes the node's previous entry.
func (r *registryDiff) mergeConsulOnly() {
	var freshAt map[string]int
	for ck := range r.current {
		name, ok := strings.CutPrefix(ck, scheduler.ConsulOnlyPrefix)
		if !ok {
			continue
		}
		nn, listed := r.obs.Nomad[name]
		if !listed {
			continue
		}
		if nn.Name == "" {
			nn.Name = name
		}
		key := nomadKey(name, &nn)
		cprev := r.current[ck]
		r.consume(ck)
		if _, known := r.current[key]; known {
			r.event(ck, name, scheduler.EventRemoved, "merged into Nomad node "+key)
			continue
		}
		// scanNomad took the node for a new one: settle it with the
		// Consul-only entry as its previous one instead.
		if freshAt == nil {
			freshAt = make(map[string]int, len(r.fresh))
			for i, f := range r.fresh {
				freshAt[f.name] = i
			}
		}
		i, ok := freshAt[name]
		if !ok {
			continue // cannot be: every unknown node is fresh
		}
		f := &r.fresh[i]
		f.merged = true
		var cn *scheduler.ConsulNode
		if f.hasConsul {
			cn = &f.cn
		}
		r.put(key, r.settle(&r.events, key, cprev, true, false, &f.nn, cn, nil), false, &cprev)
	}
}

// settleFresh settles the new Nomad nodes.
func (r *registryDiff) settleFresh() {
	for i := range r.fresh {
		f := &r.fresh[i]
		if f.merged {
			continue
		}
		var inherited *scheduler.Device
		if r.handledCurrent < len(r.current) {
			// Only a registry device Nomad no longer lists can be
			// replaced; when every one was handled above, none is left.
			inherited = r.replacedQuarantine(f.name, f.key)
		}
		var cn *scheduler.ConsulNode
		if f.hasConsul {
			cn = &f.cn
		}
		var prev scheduler.Device
		r.put(f.key, r.settle(&r.events, f.key, prev, false, false, &f.nn, cn, inherited), false, &prev)
	}
}

// freshNode is a Nomad node the registry does not know yet, or (in claims)
// one that does not own its entry.
type freshNode struct {
	name, key string
	nn        scheduler.NomadNode
	cn        scheduler.ConsulNode
	hasConsul bool
	// merged: the node took over a Consul-only entry (mergeConsulOnly
	// settled it).
	merged bool
}

// scanConsulOnly settles the Consul nodes Nomad does not list.
func (r *registryDiff) scanConsulOnly() {
	if r.consulMatched == len(r.obs.Consul) {
		return // every Consul node is a Nomad node: settled by scanNomad
	}
	for name, cn := range r.obs.Consul {
		if _, ok := r.obs.Nomad[name]; ok {
			continue
		}
		if cn.Name == "" {
			cn.Name = name
		}
		// A Nomad device of the registry that Nomad no longer lists.
		if k, ok := r.nameIndex()[name]; ok {
			if prev := r.current[k]; !r.handled(k, &prev) {
				r.put(k, r.settle(&r.events, k, prev, true, true, nil, &cn, nil), true, &prev)
				continue
			}
		}
		key := scheduler.ConsulOnlyPrefix + name
		prev, known := r.current[key]
		r.put(key, r.settle(&r.events, key, prev, known, false, nil, &cn, nil), known, &prev)
	}
}

// scanGone settles the registry devices neither side listed.
func (r *registryDiff) scanGone() {
	for k, d := range r.current {
		if r.handled(k, &d) {
			continue
		}
		if strings.HasPrefix(k, scheduler.ConsulOnlyPrefix) {
			r.event(k, d.Name, scheduler.EventRemoved, "Consul no longer lists the node and Nomad does not know it")
			r.removed = append(r.removed, k)
			continue
		}
		if nn, ok := r.obs.Nomad[d.Name]; ok && nn.ID != k {
			detail := "node name " + d.Name + " re-registered in Nomad as node " + nn.ID
			if d.Status == scheduler.StatusQuarantined {
				detail += "; its quarantine carries over"
			}
			r.event(k, d.Name, scheduler.EventRemoved, detail)
			r.removed = append(r.removed, k)
			continue
		}
		r.put(k, r.settle(&r.events, k, d, true, true, nil, nil, nil), true, &d)
	}
}

// settle computes the next registry entry of one device and appends its
// events to sink; it only reads r (see scanNomadPipelined). hadNomad tells whether prev is a Nomad node's entry (for a
// Consul-only entry there is nothing to compare capabilities with). inherit
// is the quarantined entry a new node replaces, if any.
func (r *registryDiff) settle(sink *[]scheduler.RegistryEvent, key string, prev scheduler.Device, known, hadNomad bool, nn *scheduler.NomadNode, cn *scheduler.ConsulNode, inherit *scheduler.Device) scheduler.Device {
	d := prev
	d.ID = key
	if nn != nil {
		d.Name = nn.Name
		d.Class = nn.Class
		d.Datacenter = nn.Datacenter
		d.NomadStatus = nn.Status
		d.Eligibility = nn.Eligibility
		d.Address = nn.Address
		d.Meta = nn.Meta
		d.Apps = nn.Apps
	} else {
		d.NomadStatus = ""
	}
	if cn != nil {
		d.ConsulStatus = cn.SerfStatus
		if d.Name == "" {
			d.Name = cn.Name
		}
		if d.Address == "" {
			d.Address = cn.Address
		}
	} else {
		d.ConsulStatus = ""
	}

	nomadReady := nn != nil && nn.Status == scheduler.NomadStatusReady
	if nn != nil && (nomadReady || !known) {
		d.Capabilities = nn.Capabilities
	}
	if alive := (nn == nil || nomadReady) && (cn == nil || serfAlive(cn.SerfStatus)) && (nn != nil || cn != nil); alive {
		hb := r.now
		if nn != nil && !nn.LastHeartbeat.IsZero() {
			hb = nn.LastHeartbeat
		}
		if hb.After(d.LastHeartbeat) {
			d.LastHeartbeat = hb
		}
	}

	status, reason := judgeDevice(d.Name, nn, cn, hadNomad)

	if !known {
		d.Status, d.Reason, d.Resolved = status, reason, false
		if inherit != nil {
			d.Status = scheduler.StatusQuarantined
			d.Reason = inherit.Reason + " (carried over from node " + inherit.ID + ")"
		}
		detail := "class " + className(d.Class) + ", status " + string(d.Status)
		if d.Reason != "" {
			detail += ": " + d.Reason
		}
		addEvent(sink, key, d.Name, scheduler.EventAdded, detail)
		switch d.Status {
		case scheduler.StatusOffline:
			addEvent(sink, key, d.Name, scheduler.EventOffline, reason)
		case scheduler.StatusDiscrepancy:
			addEvent(sink, key, d.Name, scheduler.EventDiscrepancy, reason)
		}
		return d
	}

	if hadNomad && nn != nil && (prev.Class != d.Class || prev.Capabilities != d.Capabilities) {
		if change := capabilityChanges(prev, d); change != "" {
			addEvent(sink, key, d.Name, scheduler.EventCapabilitiesChanged, change)
		}
	}

	if prev.Status == scheduler.StatusQuarantined {
		return d // sticky: status, reason and Resolved stay
	}
	from := prev.Status
	if from == "" {
		from = scheduler.StatusOK
	}
	d.Status, d.Reason = status, reason
	switch status {
	case scheduler.StatusOK:
		d.Resolved = false
		switch from {
		case scheduler.StatusOffline:
			addEvent(sink, key, d.Name, scheduler.EventOnline, "Nomad node ready and Consul serfHealth "+cn.SerfStatus)
		case scheduler.StatusDiscrepancy:
			addEvent(sink, key, d.Name, scheduler.EventDiscrepancyCleared, "Nomad and Consul both list the node again")
		}
	case scheduler.StatusOffline:
		if from != scheduler.StatusOffline {
			addEvent(sink, key, d.Name, scheduler.EventOffline, reason)
		}
	case scheduler.StatusDiscrepancy:
		if from != scheduler.StatusDiscrepancy || prev.Reason != reason {
			detail := reason
			if d.Resolved {
				detail += " (resolved by an operator)"
			}
			addEvent(sink, key, d.Name, scheduler.EventDiscrepancy, detail)
		}
	}
	return d
}

func (r *registryDiff) event(key, name, kind, detail string) {
	addEvent(&r.events, key, name, kind, detail)
}

func addEvent(sink *[]scheduler.RegistryEvent, key, name, kind, detail string) {
	*sink = append(*sink, scheduler.RegistryEvent{Device: key, Name: name, Kind: kind, Detail: detail})
}

func (r *registryDiff) consume(k string) {
	if r.consumed == nil {
		r.consumed = map[string]struct{}{}
	}
	if _, dup := r.consumed[k]; !dup {
		r.consumed[k] = struct{}{}
		if !r.stored(k) {
			r.handledCurrent++
		}
	}
}

// handled reports whether a current key (d its entry there) already has
// its next entry or was consumed.
func (r *registryDiff) handled(k string, d *scheduler.Device) bool {
	if _, ok := r.pending[k]; ok {
		return true
	}
	if _, ok := r.consumed[k]; ok {
		return true
	}
	return r.owned(k, d)
}

// replacedQuarantine returns the quarantined registry entry that a new Nomad
// node (key) named name replaces: a device of the same name whose node ID
// Nomad no longer lists (its data directory was wiped and it registered
// again). Quarantine is about the physical device, so it carries over.
func (r *registryDiff) replacedQuarantine(name, key string) *scheduler.Device {
	if r.quarantinedByName == nil {
		r.quarantinedByName = map[string]string{}
		for k, d := range r.current {
			if d.Status != scheduler.StatusQuarantined || strings.HasPrefix(k, scheduler.ConsulOnlyPrefix) {
				continue
			}
			if old, dup := r.quarantinedByName[d.Name]; !dup || k < old {
				r.quarantinedByName[d.Name] = k
			}
		}
	}
	k, ok := r.quarantinedByName[name]
	if !ok || k == key {
		return nil
	}
	if r.nomadIDs == nil {
		r.nomadIDs = make(map[string]struct{}, len(r.obs.Nomad))
		for _, n := range r.obs.Nomad {
			r.nomadIDs[n.ID] = struct{}{}
		}
	}
	if _, listed := r.nomadIDs[k]; listed {
		return nil // the old node is alive under another name
	}
	old := r.current[k]
	return &old
}

func (r *registryDiff) nameIndex() map[string]string {
	if r.byName != nil {
		return r.byName
	}
	r.byName = make(map[string]string, len(r.current))
	for k, d := range r.current {
		if strings.HasPrefix(k, scheduler.ConsulOnlyPrefix) {
			continue
		}
		if old, dup := r.byName[d.Name]; !dup || k < old {
			r.byName[d.Name] = k
		}
	}
	return r.byName
}
