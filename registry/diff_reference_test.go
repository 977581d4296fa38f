// Code copied from diff.go before the pipelined scan; only for tests.

package registry

import (
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// refDiff is Diff as it was before the pipelined scan: the reference the
// equivalence tests compare with.
func refDiff(current map[string]scheduler.Device, obs scheduler.Observed, now time.Time) (map[string]scheduler.Device, []scheduler.RegistryEvent) {
	next, events, _ := refDiffWith(current, obs, now, nil)
	return next, events
}

// refSettleHook sees each next entry before it is stored: old is current's
// entry under the same key when known; it returns the entry to store.
type refSettleHook func(key string, old scheduler.Device, known bool, d scheduler.Device) scheduler.Device

// diffWith is Diff calling hook (when not nil) on every next entry once;
// it reports false when a key was settled twice (two Nomad nodes claiming
// one node ID), after which the hook's view is not next's.
func refDiffWith(current map[string]scheduler.Device, obs scheduler.Observed, now time.Time, hook refSettleHook) (map[string]scheduler.Device, []scheduler.RegistryEvent, bool) {
	r := refRegistryDiff{
		current: current,
		obs:     obs,
		now:     now,
		next:    make(map[string]scheduler.Device, max(len(current), len(obs.Nomad))+16),
		hook:    hook,
	}
	r.indexConsulOnly()
	r.scanNomad()
	r.scanConsulOnly()
	if r.handledCurrent < len(current) {
		r.scanGone()
	}
	slices.SortStableFunc(r.events, func(a, b scheduler.RegistryEvent) int { return strings.Compare(a.Device, b.Device) })
	return r.next, r.events, !r.resettled
}

type refRegistryDiff struct {
	current map[string]scheduler.Device
	obs     scheduler.Observed
	now     time.Time
	next    map[string]scheduler.Device
	events  []scheduler.RegistryEvent
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
	// consulOnly maps node names to the Consul-only keys of current
	// (scheduler.ConsulOnlyPrefix + name); usually empty.
	consulOnly map[string]string
	// handledCurrent counts the current keys that have their next entry
	// or were consumed; when it reaches len(current), no current device
	// is left for scanGone.
	handledCurrent int
	hook           refSettleHook
	// resettled is set when a key got its next entry twice.
	resettled bool
	// consulMatched counts the Consul nodes scanNomad met; fresh are the
	// nodes it found new.
	consulMatched int
	fresh         []refFreshNode
}

// indexConsulOnly collects the Consul-only keys of current in one pass, so
// that the scan of Nomad's nodes needs no lookup for them.
func (r *refRegistryDiff) indexConsulOnly() {
	for k := range r.current {
		if name, ok := strings.CutPrefix(k, scheduler.ConsulOnlyPrefix); ok {
			if r.consulOnly == nil {
				r.consulOnly = map[string]string{}
			}
			r.consulOnly[name] = k
		}
	}
}

// put sets the next entry of key; fromCurrent tells whether key is a key of
// current (for handledCurrent, counted once per key), old its entry there.
func (r *refRegistryDiff) put(key string, d scheduler.Device, fromCurrent bool, old *scheduler.Device) {
	if r.hook != nil {
		var prev scheduler.Device
		if fromCurrent {
			prev = *old
		}
		d = r.hook(key, prev, fromCurrent, d)
	}
	n := len(r.next)
	r.next[key] = d
	if len(r.next) == n {
		r.resettled = true
		return
	}
	if fromCurrent {
		if _, consumed := r.consumed[key]; !consumed {
			r.handledCurrent++
		}
	}
}

// scanNomad settles every node Nomad lists.
func (r *refRegistryDiff) scanNomad() {
	for name, nn := range r.obs.Nomad {
		if nn.Name == "" {
			nn.Name = name
		}
		key := nn.ID
		if key == "" {
			key = "nomad:" + name // Nomad always sets an ID; be safe anyway.
		}
		var cn *scheduler.ConsulNode
		c, hasConsul := r.obs.Consul[name]
		if hasConsul {
			cn = &c
			r.consulMatched++
		}
		prev, known := r.current[key]
		hadNomad := known
		if ck, ok := r.consulOnly[name]; ok {
			cprev := r.current[ck]
			r.consume(ck)
			if known {
				r.event(ck, name, scheduler.EventRemoved, "merged into Nomad node "+key)
			} else {
				prev, known = cprev, true
			}
		}
		if !known {
			// A new node: settled once every known one is, when it is
			// clear whether it can replace a quarantined device.
			r.fresh = append(r.fresh, refFreshNode{name: name, key: key, nn: nn, cn: c, hasConsul: hasConsul})
			continue
		}
		d := r.settle(key, prev, known, hadNomad, &nn, cn, nil)
		r.put(key, d, hadNomad, &prev)
	}
	for i := range r.fresh {
		f := &r.fresh[i]
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
		r.put(f.key, r.settle(f.key, prev, false, false, &f.nn, cn, inherited), false, &prev)
	}
}

// refFreshNode is a Nomad node the registry does not know yet.
type refFreshNode struct {
	name, key string
	nn        scheduler.NomadNode
	cn        scheduler.ConsulNode
	hasConsul bool
}

// scanConsulOnly settles the Consul nodes Nomad does not list.
func (r *refRegistryDiff) scanConsulOnly() {
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
		if k, ok := r.nameIndex()[name]; ok && !r.handled(k) {
			prev := r.current[k]
			r.put(k, r.settle(k, prev, true, true, nil, &cn, nil), true, &prev)
			continue
		}
		key := scheduler.ConsulOnlyPrefix + name
		prev, known := r.current[key]
		r.put(key, r.settle(key, prev, known, false, nil, &cn, nil), known, &prev)
	}
}

// scanGone settles the registry devices neither side listed.
func (r *refRegistryDiff) scanGone() {
	for k, d := range r.current {
		if r.handled(k) {
			continue
		}
		if strings.HasPrefix(k, scheduler.ConsulOnlyPrefix) {
			r.event(k, d.Name, scheduler.EventRemoved, "Consul no longer lists the node and Nomad does not know it")
			continue
		}
		if nn, ok := r.obs.Nomad[d.Name]; ok && nn.ID != k {
			detail := "node name " + d.Name + " re-registered in Nomad as node " + nn.ID
			if d.Status == scheduler.StatusQuarantined {
				detail += "; its quarantine carries over"
			}
			r.event(k, d.Name, scheduler.EventRemoved, detail)
			continue
		}
		r.put(k, r.settle(k, d, true, true, nil, nil, nil), true, &d)
	}
}

// settle computes the next registry entry of one device and records its
// events. hadNomad tells whether prev is a Nomad node's entry (for a
// Consul-only entry there is nothing to compare capabilities with). inherit
// is the quarantined entry a new node replaces, if any.
func (r *refRegistryDiff) settle(key string, prev scheduler.Device, known, hadNomad bool, nn *scheduler.NomadNode, cn *scheduler.ConsulNode, inherit *scheduler.Device) scheduler.Device {
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
		r.event(key, d.Name, scheduler.EventAdded, detail)
		switch d.Status {
		case scheduler.StatusOffline:
			r.event(key, d.Name, scheduler.EventOffline, reason)
		case scheduler.StatusDiscrepancy:
			r.event(key, d.Name, scheduler.EventDiscrepancy, reason)
		}
		return d
	}

	if hadNomad && nn != nil && (prev.Class != d.Class || prev.Capabilities != d.Capabilities) {
		if change := capabilityChanges(prev, d); change != "" {
			r.event(key, d.Name, scheduler.EventCapabilitiesChanged, change)
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
			r.event(key, d.Name, scheduler.EventOnline, "Nomad node ready and Consul serfHealth "+cn.SerfStatus)
		case scheduler.StatusDiscrepancy:
			r.event(key, d.Name, scheduler.EventDiscrepancyCleared, "Nomad and Consul both list the node again")
		}
	case scheduler.StatusOffline:
		if from != scheduler.StatusOffline {
			r.event(key, d.Name, scheduler.EventOffline, reason)
		}
	case scheduler.StatusDiscrepancy:
		if from != scheduler.StatusDiscrepancy || prev.Reason != reason {
			detail := reason
			if d.Resolved {
				detail += " (resolved by an operator)"
			}
			r.event(key, d.Name, scheduler.EventDiscrepancy, detail)
		}
	}
	return d
}

func (r *refRegistryDiff) event(key, name, kind, detail string) {
	r.events = append(r.events, scheduler.RegistryEvent{Device: key, Name: name, Kind: kind, Detail: detail})
}

func (r *refRegistryDiff) consume(k string) {
	if r.consumed == nil {
		r.consumed = map[string]struct{}{}
	}
	if _, dup := r.consumed[k]; !dup {
		r.consumed[k] = struct{}{}
		if _, done := r.next[k]; !done {
			r.handledCurrent++
		}
	}
}

// handled reports whether a current key already has its next entry.
func (r *refRegistryDiff) handled(k string) bool {
	if _, ok := r.next[k]; ok {
		return true
	}
	_, ok := r.consumed[k]
	return ok
}

// replacedQuarantine returns the quarantined registry entry that a new Nomad
// node (key) named name replaces: a device of the same name whose node ID
// Nomad no longer lists (its data directory was wiped and it registered
// again). Quarantine is about the physical device, so it carries over.
func (r *refRegistryDiff) replacedQuarantine(name, key string) *scheduler.Device {
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

func (r *refRegistryDiff) nameIndex() map[string]string {
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
