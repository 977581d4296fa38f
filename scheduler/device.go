package scheduler

import "time"

// RegistryStatus is the registry's verdict on whether a device can be
// deployed to.
type RegistryStatus string

const (
	// StatusOK: Nomad and Consul both see the device and agree.
	StatusOK RegistryStatus = "ok"
	// StatusOffline: the device is known but does not respond. Offline
	// devices keep their place in a plan and are skipped, never failed.
	StatusOffline RegistryStatus = "offline"
	// StatusQuarantined: the device failed a rollout on its own and was
	// rolled back; it is excluded from later waves until released.
	StatusQuarantined RegistryStatus = "quarantined"
	// StatusDiscrepancy: Nomad and Consul disagree about the device (one of
	// them does not know it). Deploying to it is blocked until both agree
	// again or an operator resolves it.
	StatusDiscrepancy RegistryStatus = "discrepancy"
)

// Capabilities are what a device reports about its hardware and software.
type Capabilities struct {
	Arch        string `json:"arch,omitempty"`
	OS          string `json:"os,omitempty"`
	Kernel      string `json:"kernel,omitempty"`
	MemoryMB    int    `json:"memory_mb,omitempty"`
	Accelerator string `json:"accelerator,omitempty"`
	Model       string `json:"model,omitempty"`
}

// AppSlot is what one application runs on a device.
type AppSlot struct {
	Slot    string `json:"slot,omitempty"`
	Version string `json:"version,omitempty"`
}

// Device is one registry entry.
type Device struct {
	// ID is the Nomad node ID; Name is the Nomad node name (and Consul node
	// name).
	ID          string `json:"id"`
	Name        string `json:"name"`
	Class       string `json:"class"`
	Datacenter  string `json:"datacenter"`
	NomadStatus string `json:"nomad_status"`
	Eligibility string `json:"eligibility"`
	// ConsulStatus is the device's serfHealth status in Consul ("passing",
	// "critical", or "" when Consul does not know the node).
	ConsulStatus  string             `json:"consul_status"`
	Address       string             `json:"address,omitempty"`
	Capabilities  Capabilities       `json:"capabilities"`
	Meta          map[string]string  `json:"meta,omitempty"`
	Apps          map[string]AppSlot `json:"apps,omitempty"`
	LastHeartbeat time.Time          `json:"last_heartbeat"`
	Status        RegistryStatus     `json:"status"`
	// Reason explains a status other than ok.
	Reason string `json:"reason,omitempty"`
	// Resolved marks a discrepancy an operator accepted with `fleetplan
	// registry resolve`.
	Resolved bool `json:"resolved,omitempty"`
}

// Deployable reports whether a rollout may switch the device, and why not.
func (d *Device) Deployable() (bool, string) {
	switch d.Status {
	case StatusQuarantined:
		return false, "quarantined: " + d.Reason
	case StatusDiscrepancy:
		if d.Resolved {
			return true, ""
		}
		return false, "registry discrepancy: " + d.Reason
	}
	return true, ""
}
