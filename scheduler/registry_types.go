package scheduler

import "time"

// The device registry itself (the sync that turns a scan into registry
// entries and events) lives in package registry; these are the types it
// shares with the rest of fleetplan.

// Observed is one scan of the cluster: every Nomad node and every Consul
// catalog node, each keyed by node name.
type Observed struct {
	Nomad  map[string]NomadNode
	Consul map[string]ConsulNode
}

// NomadNode is what Nomad reports about one node.
type NomadNode struct {
	ID         string
	Name       string
	Class      string
	Datacenter string
	// Status is the Nomad node status: ready, initializing, down or
	// disconnected.
	Status       string
	Eligibility  string
	Address      string
	Capabilities Capabilities
	Meta         map[string]string
	Apps         map[string]AppSlot
	// LastHeartbeat is when the node last reported, if the source knows;
	// zero means "now" for a node that is ready.
	LastHeartbeat time.Time
}

// ConsulNode is what the Consul catalog reports about one node.
type ConsulNode struct {
	Name    string
	Address string
	// SerfStatus is the status of the node's serfHealth check: passing,
	// warning or critical ("" when the node has none, treated as critical).
	SerfStatus string
}

// RegistryEvent is one change a registry sync found (registry.Diff), for the
// audit trail.
type RegistryEvent struct {
	// Device is the registry key (the Nomad node ID, or ConsulOnlyPrefix +
	// name); Name is the node name.
	Device string `json:"device"`
	Name   string `json:"name"`
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// Registry event kinds.
const (
	EventAdded               = "added"
	EventOffline             = "offline"
	EventOnline              = "online"
	EventCapabilitiesChanged = "capabilities-changed"
	EventDiscrepancy         = "discrepancy"
	EventDiscrepancyCleared  = "discrepancy-cleared"
	EventRemoved             = "removed"
)

// ConsulOnlyPrefix prefixes the registry key (and Device.ID) of a device that
// only Consul knows, which has no Nomad node ID.
const ConsulOnlyPrefix = "consul:"

// Nomad node statuses and Consul check statuses the registry sync reads.
const (
	NomadStatusReady = "ready"
	SerfPassing      = "passing"
	SerfWarning      = "warning"
	SerfCritical     = "critical"
)
