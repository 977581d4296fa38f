// Package jobs turns a release into Nomad jobs and moves devices between them.
//
// Every application fleetplan manages runs as two Nomad system jobs, the two
// slots `<app>-blue` and `<app>-green` (package contract holds the names
// and keys shared with the device agent and the health watcher). Each slot
// job carries the constraint
//
//	${meta.fleetplan.<app>.slot} set_contains <colour>
//
// so a device runs a slot exactly when its dynamic node metadata names that
// colour ("blue", "green", or "blue,green" for a blue-green hot standby).
//
//   - ParseJobspec has the Nomad server parse the application's jobspec.
//   - Compile (pure) turns the parsed job and the policy into one slot job.
//   - Nomad implements scheduler.Cluster: it registers the candidate slot job
//     and switches single devices between slots in four steps: set the node
//     metadata, wait until the server sees it, stop the old slot's
//     allocation, let Nomad place the new one.
//
// Nothing here ever modifies the active slot's job, and nothing in a switch
// reads or needs the version it switches away from, so rolling back works
// when the candidate is dead on arrival.
package jobs
