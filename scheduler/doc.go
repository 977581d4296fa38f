// Package scheduler is fleetplan's domain core: the rollout policy types, the
// wave planner, the rollout state machine, gates, thresholds and failure
// analysis.
//
// It performs no network I/O and never imports the Nomad or Consul clients
// (`make lint` fails the build if it does): everything that talks to a
// cluster sits behind the narrow interfaces declared here and is implemented
// in jobs/ and checks/. Time is injected, so the state machines are tested
// without sleeping.
package scheduler
