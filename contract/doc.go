// Package contract is what fleetplan's three sides agree on about an
// application, in one place: the job compiler (jobs) writes it into the
// Nomad jobs, the device agent (agent) reads it on the device and writes
// its checks by it, and the health watcher (checks) reads it back from
// Nomad and Consul.
//
//   - Every application runs as two Nomad system jobs, the slots
//     <app>-blue and <app>-green (SlotJobID); the device agent runs as the
//     system job fleetplan-agent (AgentJobID).
//   - A device runs a slot when its dynamic node metadata
//     fleetplan.<app>.slot (SlotMetaKey) names it: "blue", "green" or
//     "blue,green".
//   - A slot job carries the job meta fleetplan_app, fleetplan_slot,
//     fleetplan_version (exactly the release's version) and
//     fleetplan_rollout (the run ID);
//     its services carry the tags fleetplan-slot=<slot> and
//     fleetplan-version=<version> and the service meta fleetplan_slot,
//     fleetplan_version and fleetplan_rollout (the agent also reads a
//     service meta fleetplan_app when a jobspec sets one). A reported
//     version is compared with scheduler.SameVersion (a leading "v" and
//     semver build metadata do not count).
//   - Health checks name their layer: "fleetplan L<n> ..." is layer n, 1
//     to 4; Consul's serfHealth is layer 1 too. The slot job's own check is
//     "fleetplan L3 application"; the agent adds "fleetplan L1
//     connectivity", "fleetplan L2 system", "fleetplan L3 version and
//     metrics" and "fleetplan L4 functional".
//   - The last line of the output of the agent's layer 3 check is the
//     metrics record, `metrics: {...}` (Metrics): the agent formats it, the
//     watcher parses it, so that the rollout gate compares measurements
//     without polling any device.
//
// The package imports nothing of fleetplan.
package contract
