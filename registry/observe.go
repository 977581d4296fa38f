package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Node attributes and metadata the capabilities come from.
const (
	attrArch     = "cpu.arch"
	attrOS       = "os.name"
	attrKernel   = "kernel.version"
	attrMemBytes = "memory.totalbytes"
	metaModel    = "hw.model"
	metaAccel    = "hw.accelerator"
	metaMemMB    = "hw.mem_mb"
)

// Consul member statuses (serf.MemberStatus).
const (
	memberLeaving = 2
	memberLeft    = 3
)

// nodeDetail is what the registry keeps of a Nomad node's details, valid
// while the node's ModifyIndex does not move.
type nodeDetail struct {
	modifyIndex uint64
	caps        scheduler.Capabilities
	meta        map[string]string
}

// Observe scans Nomad and Consul once: one Nomad node list (plus the details
// of the nodes that changed since the previous scan; Nomad's list lacks
// attributes and metadata), Consul's serfHealth checks of every node in one
// filtered health query, and the agent members (to leave the Consul servers
// out and to see agents that left). Application versions come from the
// active-slot records in KV.
func (r *Registry) Observe(ctx context.Context) (scheduler.Observed, error) {
	obs := scheduler.Observed{}
	var nomadErr, consulErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		obs.Consul, consulErr = r.observeConsul(ctx)
	}()
	obs.Nomad, nomadErr = r.observeNomad(ctx)
	wg.Wait()
	if err := errors.Join(nomadErr, consulErr); err != nil {
		return scheduler.Observed{}, err
	}
	// A Consul server is no device, unless it also runs a Nomad client.
	for name, cn := range obs.Consul {
		if cn.Address == serverMarker {
			if _, ok := obs.Nomad[name]; ok {
				cn.Address = ""
				obs.Consul[name] = cn
			} else {
				delete(obs.Consul, name)
			}
		}
	}
	if err := r.fillAppVersions(ctx, obs.Nomad); err != nil {
		return scheduler.Observed{}, err
	}
	r.shareApps(obs.Nomad)
	return obs, nil
}

// shareApps gives nodes whose applications run the same slots and versions
// one Apps map, the one the previous Observe gave them when they did not
// change: the sync then compares them by identity (registry entries adopt
// the observation's maps) instead of entry by entry. Only Sync reads an
// observation, and it never modifies the maps.
func (r *Registry) shareApps(nodes map[string]scheduler.NomadNode) {
	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	prev := r.sharedApps
	shared := make(map[string]map[string]scheduler.AppSlot, len(prev)+1)
	var key []byte
	var names []string
	for name, n := range nodes {
		if len(n.Apps) == 0 {
			continue
		}
		names = names[:0]
		for app := range n.Apps {
			names = append(names, app)
		}
		slices.Sort(names)
		key = key[:0]
		for _, app := range names {
			s := n.Apps[app]
			// Lengths first: no value can make two keys collide.
			key = strconv.AppendInt(key, int64(len(app)), 10)
			key = append(key, ':')
			key = append(key, app...)
			key = strconv.AppendInt(key, int64(len(s.Slot)), 10)
			key = append(key, ':')
			key = append(key, s.Slot...)
			key = strconv.AppendInt(key, int64(len(s.Version)), 10)
			key = append(key, ':')
			key = append(key, s.Version...)
		}
		m, ok := shared[string(key)]
		if !ok {
			if m, ok = prev[string(key)]; !ok {
				m = n.Apps
			}
			if len(shared) < maxSharedMaps {
				shared[string(key)] = m
			}
		}
		n.Apps = m
		nodes[name] = n
	}
	r.sharedApps = shared
}

// serverMarker marks Consul servers in observeConsul's result until Observe
// decides whether to keep them.
const serverMarker = "\x00consul-server"

func (r *Registry) observeNomad(ctx context.Context) (map[string]scheduler.NomadNode, error) {
	stubs, _, err := r.nomad.Nodes().List((&nomadapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing the nodes of Nomad at %s: %w", r.nomad.Address(), err)
	}

	// Details of the nodes that are new or changed, a few at a time.
	r.cacheMu.Lock()
	var stale []*nomadapi.NodeListStub
	seen := make(map[string]struct{}, len(stubs))
	for _, s := range stubs {
		seen[s.ID] = struct{}{}
		if d, ok := r.details[s.ID]; !ok || d.modifyIndex != s.ModifyIndex {
			stale = append(stale, s)
		}
	}
	for id := range r.details {
		if _, ok := seen[id]; !ok {
			delete(r.details, id)
		}
	}
	r.cacheMu.Unlock()
	gone, err := r.fetchDetails(ctx, stale)
	if err != nil {
		return nil, err
	}

	r.cacheMu.Lock()
	defer r.cacheMu.Unlock()
	out := make(map[string]scheduler.NomadNode, len(stubs))
	for _, s := range stubs {
		if _, ok := gone[s.ID]; ok {
			continue
		}
		d := r.details[s.ID]
		out[s.Name] = scheduler.NomadNode{
			ID:           s.ID,
			Name:         s.Name,
			Class:        s.NodeClass,
			Datacenter:   s.Datacenter,
			Status:       s.Status,
			Eligibility:  s.SchedulingEligibility,
			Address:      s.Address,
			Capabilities: d.caps,
			Meta:         d.meta,
			Apps:         appSlots(d.meta),
		}
	}
	return out, nil
}

// fetchDetails reads the details of the given nodes (bounded concurrency)
// into the cache. It returns the nodes Nomad no longer knows.
func (r *Registry) fetchDetails(ctx context.Context, stubs []*nomadapi.NodeListStub) (map[string]struct{}, error) {
	gone := map[string]struct{}{}
	if len(stubs) == 0 {
		return gone, nil
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, r.detailWorkers)
	)
	for _, s := range stubs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			n, _, err := r.nomad.Nodes().Info(s.ID, (&nomadapi.QueryOptions{}).WithContext(ctx))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				var ure nomadapi.UnexpectedResponseError
				if errors.As(err, &ure) && ure.StatusCode() == http.StatusNotFound {
					gone[s.ID] = struct{}{}
					return
				}
				errs = append(errs, fmt.Errorf("node %s (%s): %w", s.Name, s.ID, err))
				return
			}
			r.cacheMu.Lock()
			r.details[s.ID] = nodeDetail{modifyIndex: s.ModifyIndex, caps: capabilities(n.Attributes, n.Meta), meta: n.Meta}
			r.cacheMu.Unlock()
		}()
	}
	wg.Wait()
	r.detailFetches.Add(int64(len(stubs)))
	if len(errs) > 0 {
		return nil, fmt.Errorf("reading node details from Nomad at %s: %w", r.nomad.Address(), errors.Join(errs...))
	}
	return gone, nil
}

// capabilities reads a device's capabilities from its Nomad attributes and
// node metadata. The declared hardware (hw.mem_mb) wins over the memory the
// client fingerprinted.
func capabilities(attrs, meta map[string]string) scheduler.Capabilities {
	c := scheduler.Capabilities{
		Arch:        attrs[attrArch],
		OS:          attrs[attrOS],
		Kernel:      attrs[attrKernel],
		Accelerator: meta[metaAccel],
		Model:       meta[metaModel],
	}
	if mb, err := strconv.Atoi(meta[metaMemMB]); err == nil && mb > 0 {
		c.MemoryMB = mb
	} else if b, err := strconv.ParseInt(attrs[attrMemBytes], 10, 64); err == nil && b > 0 {
		c.MemoryMB = int(b >> 20)
	}
	return c
}

// appSlots reads the slot of each application from the node metadata
// fleetplan.<app>.slot.
func appSlots(meta map[string]string) map[string]scheduler.AppSlot {
	var apps map[string]scheduler.AppSlot
	for k, v := range meta {
		app, ok := contract.AppOfSlotMetaKey(k)
		if !ok || v == "" {
			continue
		}
		if apps == nil {
			apps = map[string]scheduler.AppSlot{}
		}
		apps[app] = scheduler.AppSlot{Slot: v}
	}
	return apps
}

// fillAppVersions sets the version of each application slot: the active
// slot runs the recorded stable version, the other one the version of the
// rollout in progress (if its candidate is that slot).
func (r *Registry) fillAppVersions(ctx context.Context, nodes map[string]scheduler.NomadNode) error {
	hasApps := false
	for _, n := range nodes {
		if len(n.Apps) > 0 {
			hasApps = true
			break
		}
	}
	if !hasApps {
		return nil
	}
	active, err := r.store.ActiveSlots(ctx)
	if err != nil {
		return err
	}
	type candidate struct {
		slot, version string
	}
	inProgress := map[string]*candidate{}
	for name, n := range nodes {
		var apps map[string]scheduler.AppSlot
		for app, s := range n.Apps {
			version := ""
			if a := active[app]; a != nil && a.Slot == s.Slot {
				version = a.Version
			} else if s.Slot == scheduler.SlotBlue || s.Slot == scheduler.SlotGreen {
				c, ok := inProgress[app]
				if !ok {
					run, err := r.store.LoadState(ctx, app)
					if err != nil {
						return err
					}
					if run != nil && !run.Finished() {
						c = &candidate{run.Candidate, run.Version}
					}
					inProgress[app] = c
				}
				if c != nil && c.slot == s.Slot {
					version = c.version
				}
			}
			if version != "" {
				if apps == nil {
					apps = make(map[string]scheduler.AppSlot, len(n.Apps))
				}
				apps[app] = scheduler.AppSlot{Slot: s.Slot, Version: version}
			}
		}
		if apps != nil {
			for app, s := range n.Apps {
				if _, ok := apps[app]; !ok {
					apps[app] = s
				}
			}
			n.Apps = apps
			nodes[name] = n
		}
	}
	return nil
}

func (r *Registry) observeConsul(ctx context.Context) (map[string]scheduler.ConsulNode, error) {
	checks, _, err := r.consul.Health().State(consulapi.HealthAny, r.serfQuery().WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the serfHealth checks from Consul: %w", err)
	}
	var members []*consulapi.AgentMember
	if _, err := r.consul.Raw().Query("/v1/agent/members", &members, (&consulapi.QueryOptions{}).WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("reading the Consul agent members: %w", err)
	}
	out := make(map[string]scheduler.ConsulNode, len(checks))
	for _, c := range checks {
		out[c.Node] = scheduler.ConsulNode{Name: c.Node, SerfStatus: c.Status}
	}
	for _, m := range members {
		cn, known := out[m.Name]
		switch {
		case m.Tags[consulapi.MemberTagKeyRole] == consulapi.MemberTagValueRoleServer:
			cn.Name, cn.Address = m.Name, serverMarker
		case known:
			cn.Address = m.Addr
		case m.Status == memberLeft || m.Status == memberLeaving:
			// The agent left gracefully, so the catalog dropped the node:
			// Consul still knows it, and it is not alive.
			cn = scheduler.ConsulNode{Name: m.Name, Address: m.Addr, SerfStatus: scheduler.SerfCritical}
		default:
			continue
		}
		out[m.Name] = cn
	}
	return out, nil
}

// serfQuery selects every node's serfHealth check in one query.
func (r *Registry) serfQuery() *consulapi.QueryOptions {
	return &consulapi.QueryOptions{Filter: `CheckID == "` + contract.SerfHealthCheck + `"`}
}
