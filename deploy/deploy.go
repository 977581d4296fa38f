// Package deploy holds the Nomad jobspecs fleetplan installs.
package deploy

import _ "embed"

// ControllerJobspec is fleetplan-controller.nomad.hcl, the controller
// service's job (`fleetplan controller install` registers it).
//
//go:embed fleetplan-controller.nomad.hcl
var ControllerJobspec string

// ControllerJobID is the controller service's job, and ControllerService
// the Consul service it registers.
const (
	ControllerJobID   = "fleetplan-controller"
	ControllerService = "fleetplan-controller"
)
