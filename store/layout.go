package store

import (
	"fmt"
	"strings"
)

// The Consul KV layout of fleetplan. Every key fleetplan reads or writes is
// named here; the root is "fleetplan/" unless Options.Prefix (the
// -kv-prefix flag, FLEETPLAN_KV_PREFIX) says otherwise.
//
//	<root>rollouts/<app>/state                    JSON scheduler.Rollout (the current run)
//	<root>rollouts/<app>/devices/<device-id>      JSON scheduler.DeviceRecord, one key per device
//	<root>rollouts/<app>/control/approval         JSON scheduler.ApprovalRecord  (written by operators)
//	<root>rollouts/<app>/control/pause            JSON scheduler.Request         (written by operators)
//	<root>rollouts/<app>/control/rollback         JSON scheduler.Request         (written by operators)
//	<root>rollouts/<app>/lock                     the controller lock (JSON {holder, since, session})
//	<root>rollouts/<app>/request                  JSON RolloutRequest: a rollout submitted to the
//	                                              controller service (policy and jobspec sources,
//	                                              options; its status written by the service)
//	<root>rollouts/<app>/history/<run-id>/state   JSON scheduler.Rollout of a finished run
//	<root>rollouts/<app>/history/<run-id>/devices/<NNNNNN>
//	                                              chunk: JSON array of scheduler.DeviceRecord, at
//	                                              most ArchiveChunkDevices records and ArchiveChunkBytes
//	<root>apps/<app>                              JSON scheduler.ActiveSlot
//	<root>controller/leader                       the controller service's leadership lock
//	                                              (JSON {holder, since, session})
//	<root>controller/heartbeat                    the leader's heartbeat, written after each renewal
//	                                              of its session, bound to it (JSON {session, holder,
//	                                              seq}); standbys reap a leader whose heartbeat stops
//	<root>audit/<rollout>/<NNNNNNNN>              chunk: JSON array of audit.Record, at most
//	                                              AuditChunkRecords records ("_global" when no rollout)
//	<root>registry/<node-id>                      JSON scheduler.Device, one key per device
//	<root>registry/consul:<name>                  a device only Consul knows
//	<root>registry-events/<unix-nanos>-<NNNN>     chunk: JSON array of registry events of one sync
//	                                              (or operator action), at most EventChunkBytes;
//	                                              the oldest keys are pruned
//
// The device agents' health configuration lives in a folder of its own,
// outside the root (the agents are started with it, see AgentConfigKey):
//
//	fleetplan/agent/apps/<app>                    JSON agent.AppConfig, written by `fleetplan apply`
type Layout struct {
	root string
}

// NewLayout returns the layout under root ("" is DefaultPrefix); a missing
// trailing slash is added.
func NewLayout(root string) Layout {
	if root == "" {
		root = DefaultPrefix
	}
	if !strings.HasSuffix(root, "/") {
		root += "/"
	}
	return Layout{root: root}
}

// Root is the KV root, with its trailing slash.
func (l Layout) Root() string { return l.root }

// Rollouts is the folder of every rollout.
func (l Layout) Rollouts() string { return l.root + "rollouts/" }

// Rollout is the folder of one rollout.
func (l Layout) Rollout(app string) string { return l.Rollouts() + app + "/" }

// State is the key of a rollout's current run.
func (l Layout) State(app string) string { return l.Rollout(app) + "state" }

// Devices is the folder of the device records of a rollout's current run.
func (l Layout) Devices(app string) string { return l.Rollout(app) + "devices/" }

// Controls is the folder of the operators' requests to a rollout.
func (l Layout) Controls(app string) string { return l.Rollout(app) + "control/" }

// Lock is the key of a rollout's controller lock.
func (l Layout) Lock(app string) string { return l.Rollout(app) + "lock" }

// Request is the key of the rollout request submitted to the controller
// service.
func (l Layout) Request(app string) string { return l.Rollout(app) + "request" }

// Leader is the key of the controller service's leadership lock.
func (l Layout) Leader() string { return l.Controller() + "leader" }

// Controller is the folder of the controller service's leadership keys.
func (l Layout) Controller() string { return l.root + "controller/" }

// Heartbeat is the key of the controller service leader's heartbeat.
func (l Layout) Heartbeat() string { return l.Controller() + "heartbeat" }

// History is the folder of a rollout's archived runs.
func (l Layout) History(app string) string { return l.Rollout(app) + "history/" }

// Run is the folder of one archived run.
func (l Layout) Run(app, id string) string { return l.History(app) + id + "/" }

// RunState is the key of an archived run's state.
func (l Layout) RunState(app, id string) string { return l.Run(app, id) + "state" }

// RunDevices is the folder of an archived run's device record chunks.
func (l Layout) RunDevices(app, id string) string { return l.Run(app, id) + "devices/" }

// RunDeviceChunk is the key of the i-th device record chunk of an archived run.
func (l Layout) RunDeviceChunk(app, id string, i int) string {
	return fmt.Sprintf("%s%06d", l.RunDevices(app, id), i)
}

// Apps is the folder of the applications' active slots.
func (l Layout) Apps() string { return l.root + "apps/" }

// App is the key of an application's active slot.
func (l Layout) App(app string) string { return l.Apps() + app }

// Audit is the folder of the audit trail.
func (l Layout) Audit() string { return l.root + "audit/" }

// AuditTrail is the folder of one rollout's audit chunks ("" is the trail of
// actions outside a rollout, "_global").
func (l Layout) AuditTrail(rollout string) string {
	if rollout == "" {
		rollout = "_global"
	}
	return l.Audit() + rollout + "/"
}

// AuditChunk is the key of the seq-th audit chunk in a trail folder.
func AuditChunk(folder string, seq int) string { return fmt.Sprintf("%s%08d", folder, seq) }

// Registry is the folder of the device registry.
func (l Layout) Registry() string { return l.root + "registry/" }

// RegistryDevice is the key of one registry device.
func (l Layout) RegistryDevice(id string) string { return l.Registry() + id }

// RegistryEvents is the folder of the registry's event log.
func (l Layout) RegistryEvents() string { return l.root + "registry-events/" }

// RegistryEventChunk is the key of an event chunk written at unixNanos, seq
// keeping keys of one process distinct within a nanosecond.
func (l Layout) RegistryEventChunk(unixNanos int64, seq uint32) string {
	return fmt.Sprintf("%s%019d-%04d", l.RegistryEvents(), unixNanos, seq%10000)
}

// DefaultAgentConfigPrefix is the Consul KV folder holding the device
// agents' health configuration, one application per key. It does not move
// with the root: the agents are installed with it (`fleetplan agent
// -kv-prefix`).
const DefaultAgentConfigPrefix = "fleetplan/agent/apps"

// AgentConfigKey is the key of an application's agent configuration in
// folder ("" is DefaultAgentConfigPrefix).
func AgentConfigKey(folder, app string) string {
	if folder == "" {
		folder = DefaultAgentConfigPrefix
	}
	return strings.TrimSuffix(folder, "/") + "/" + app
}
