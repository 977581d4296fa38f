package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// The blue-green traffic switch.
//
// Consumers select a device's live instance with the tag TagLive:
// `live.<service>.service.consul` in Consul DNS, or
// /v1/health/service/<service>?tag=live&passing. The tag is not on the
// instances Nomad registers: with enable_tag_override, Nomad 1.6.1 keeps
// tags edited in Consul only through its periodic syncs; any service
// operation on the node (an allocation starting or stopping, which is
// exactly when blue-green moves traffic) re-registers every service of
// the node with the job's tags (command/agent/consul/service_client.go,
// agentServiceUpdateRequired: only syncPeriodic keeps Consul's tags). The
// traffic would fall back to no instance, or to both, at those moments.
//
// So fleetplan keeps one live entry per device and service in the Consul
// catalog, on the node TrafficNode (an external node: no agent runs
// anti-entropy on it, Nomad never touches it): service name and port of
// the live slot's instance, its address, its tags plus TagLive, and meta
// naming the device, the slot and the instance. Moving the traffic is one
// catalog write that replaces the entry (never two live instances of a
// device, never none while the target is registered), and it needs
// nothing of the device: an offline device's traffic moves too.

// TrafficNode is the catalog node of the live entries.
const TrafficNode = "fleetplan-traffic"

// TagLive marks the live instance of a device.
const TagLive = "live"

// Meta keys of a live entry.
const (
	MetaDevice   = "fleetplan_device"
	MetaInstance = "fleetplan_instance"
)

// TrafficCluster is the Cluster of a blue-green rollout: Nomad for the
// slots, the Consul catalog for the traffic.
type TrafficCluster struct {
	*Nomad
	consul *consulapi.Client
	names  []string
	// CallTimeout bounds each Consul call.
	CallTimeout time.Duration
}

var (
	_ scheduler.Cluster        = (*TrafficCluster)(nil)
	_ scheduler.TrafficRouter  = (*TrafficCluster)(nil)
	_ scheduler.CapacitySource = (*TrafficCluster)(nil)
)

// WithTraffic adds the traffic switch on Consul to n.
func WithTraffic(n *Nomad, consul *consulapi.Client) *TrafficCluster {
	var names []string
	if n.base != nil {
		for _, g := range n.base.TaskGroups {
			for _, s := range allServices(g) {
				if s.Name != "" && !slices.Contains(names, s.Name) {
					names = append(names, s.Name)
				}
			}
		}
	}
	if len(names) == 0 {
		names = []string{n.policy.Name}
	}
	return &TrafficCluster{Nomad: n, consul: consul, names: names, CallTimeout: DefaultCallTimeout}
}

// LiveServiceID is the ID of a device's live entry of one service.
func LiveServiceID(app, device, service string) string {
	return "fleetplan-live-" + app + "-" + device + "-" + service
}

// RouteTraffic points the device's live entries at slot's instances; slot
// "" removes them.
func (t *TrafficCluster) RouteTraffic(ctx context.Context, r *scheduler.Rollout, dev scheduler.DeviceRef, slot string) error {
	cctx, cancel := context.WithTimeout(ctx, t.CallTimeout)
	defer cancel()
	q := (&consulapi.QueryOptions{}).WithContext(cctx)
	w := (&consulapi.WriteOptions{}).WithContext(cctx)
	if slot == "" {
		for _, name := range t.names {
			_, err := t.consul.Catalog().Deregister(&consulapi.CatalogDeregistration{Node: TrafficNode, ServiceID: LiveServiceID(r.App, dev.Name, name)}, w)
			if err != nil {
				return t.consulErr(ctx, fmt.Errorf("removing the live entry of %s on %s: %w", name, dev.Name, err))
			}
		}
		return nil
	}
	node, _, err := t.consul.Catalog().Node(dev.Name, q)
	if err != nil {
		return t.consulErr(ctx, fmt.Errorf("reading the catalog node %s: %w", dev.Name, err))
	}
	if node == nil || node.Node == nil {
		return fmt.Errorf("the device %s is not in the Consul catalog: its slot %s has no instance to send traffic to (check the device's Consul agent)", dev.Name, slot)
	}
	instances := t.instances(node, slot)
	if len(instances) == 0 {
		return fmt.Errorf("slot %s of %s has no service instance registered on %s yet: the traffic stays where it is (Nomad registers it once the allocation runs)", slot, r.App, dev.Name)
	}
	for _, in := range instances {
		addr := in.Address
		if addr == "" {
			addr = node.Node.Address
		}
		tags := slices.DeleteFunc(slices.Clone(in.Tags), func(s string) bool { return s == TagLive })
		meta := map[string]string{}
		for k, v := range in.Meta {
			meta[k] = v
		}
		meta[contract.MetaApp] = r.App
		meta[MetaDevice] = dev.Name
		meta[MetaInstance] = in.ID
		reg := &consulapi.CatalogRegistration{
			Node:     TrafficNode,
			Address:  "127.0.0.1",
			NodeMeta: map[string]string{"external-node": "true", "external-probe": "false", contract.MetaComponent: "traffic"},
			Service: &consulapi.AgentService{
				ID:      LiveServiceID(r.App, dev.Name, in.Service),
				Service: in.Service,
				Tags:    append(tags, TagLive),
				Address: addr,
				Port:    in.Port,
				Meta:    meta,
			},
			SkipNodeUpdate: true,
		}
		if _, err := t.consul.Catalog().Register(reg, w); err != nil {
			return t.consulErr(ctx, fmt.Errorf("registering the live entry of %s on %s (slot %s): %w", in.Service, dev.Name, slot, err))
		}
	}
	return nil
}

// instances are slot's service instances of the application on a node,
// one per service name (the newest allocation's when there are several).
func (t *TrafficCluster) instances(node *consulapi.CatalogNode, slot string) []*consulapi.AgentService {
	byName := map[string]*consulapi.AgentService{}
	for _, s := range node.Services {
		if !strings.HasPrefix(s.ID, contract.NomadTaskServicePrefix) || !slices.Contains(t.names, s.Service) ||
			!slices.Contains(s.Tags, contract.SlotTag(slot)) {
			continue
		}
		if prev := byName[s.Service]; prev == nil || s.ModifyIndex > prev.ModifyIndex {
			byName[s.Service] = s
		}
	}
	out := make([]*consulapi.AgentService, 0, len(byName))
	for _, s := range byName {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out
}

// consulErr marks a failed Consul call as the control plane's (I5): it
// says nothing about the device.
func (t *TrafficCluster) consulErr(ctx context.Context, err error) error {
	if ctx.Err() != nil || errors.Is(err, scheduler.ErrControlPlane) {
		return err
	}
	return fmt.Errorf("%w: %w", scheduler.ErrControlPlane, err)
}
