package contract

import "strings"

// Nomad jobs.
const (
	// AgentJobID is the ID (and name) of the device agent's system job.
	AgentJobID = "fleetplan-agent"
	// MetaComponent is the job meta key naming a fleetplan component job;
	// the agent's job has the value ComponentAgent.
	MetaComponent  = "fleetplan_component"
	ComponentAgent = "agent"
)

// SlotJobID is the ID (and name) of an application's slot job:
// <app>-blue or <app>-green.
func SlotJobID(app, slot string) string { return app + "-" + slot }

// Dynamic node metadata.
const (
	slotMetaPrefix = "fleetplan."
	slotMetaSuffix = ".slot"
)

// SlotMetaKey is the dynamic node metadata key naming the slot(s) a device
// runs for an application: fleetplan.<app>.slot.
func SlotMetaKey(app string) string { return slotMetaPrefix + app + slotMetaSuffix }

// AppOfSlotMetaKey returns the application of a SlotMetaKey; ok is false
// for any other key (and for an empty application name).
func AppOfSlotMetaKey(key string) (app string, ok bool) {
	if !strings.HasPrefix(key, slotMetaPrefix) || !strings.HasSuffix(key, slotMetaSuffix) ||
		len(key) <= len(slotMetaPrefix)+len(slotMetaSuffix) {
		return "", false
	}
	return key[len(slotMetaPrefix) : len(key)-len(slotMetaSuffix)], true
}

// Job meta keys of a slot job. MetaSlot, MetaVersion and MetaRollout are
// also set on its services; MetaApp is read from a service's meta when
// present.
const (
	// MetaVersion holds exactly the policy's release version (invariant
	// I4): an application may report NOMAD_META_fleetplan_version verbatim
	// as its version. Versions are compared with scheduler.SameVersion,
	// which ignores a leading "v" and semver build metadata.
	MetaVersion = "fleetplan_version"
	// MetaRollout holds the ID of the rollout run that registered the job.
	MetaRollout = "fleetplan_rollout"
	MetaSlot    = "fleetplan_slot"
	// MetaApp names the application.
	MetaApp = "fleetplan_app"
)

// Service tags of a slot job's services: TagSlot and TagVersion prefix
// "fleetplan-slot=<slot>" and "fleetplan-version=<version>".
const (
	TagSlot    = "fleetplan-slot="
	TagVersion = "fleetplan-version="
)

// SlotTag is the service tag of a slot's services.
func SlotTag(slot string) string { return TagSlot + slot }

// VersionTag is the service tag of the version a service runs.
func VersionTag(version string) string { return TagVersion + version }

// NomadTaskServicePrefix starts the Consul service ID of a service Nomad
// registers for an allocation: _nomad-task-<alloc ID>-<group or task>-...
const NomadTaskServicePrefix = "_nomad-task-"

// Consul check names. A check named LayerCheckPrefix + "<n> ..." belongs
// to health layer n.
const (
	LayerCheckPrefix = "fleetplan L"
	// SerfHealthCheck is Consul's agent liveness check (layer 1), its ID
	// and its name in the watcher's results.
	SerfHealthCheck = "serfHealth"

	// CheckApplication is the layer 3 check the slot job registers through
	// Nomad on the service of the application's health port.
	CheckApplication = "fleetplan L3 application"

	// The device agent's checks. Its layer 3 check is not called "fleetplan
	// L3 application": Nomad registers that one on the same service, and
	// one name per check keeps the Consul UI readable.
	CheckConnectivity   = "fleetplan L1 connectivity"
	CheckSystem         = "fleetplan L2 system"
	CheckVersionMetrics = "fleetplan L3 version and metrics"
	CheckFunctional     = "fleetplan L4 functional"
)
