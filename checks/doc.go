// Package checks measures the candidate slot's health on the devices: the
// Watcher follows Nomad (nodes, the slot jobs' versions and allocations)
// and Consul (node checks such as serfHealth, the slot services' checks)
// with blocking queries (internal/blocking loops) and answers
// scheduler.HealthSource from those caches, never by polling devices. Check
// names carry their layer ("fleetplan L3 application", see contract);
// ParseCheckOutput reads what an application's health endpoint answered
// from a Consul HTTP check output, and the device agent's metrics record
// comes from contract.ParseMetrics.
//
// Verdicts are not made here: the scheduler's Gate turns the health into
// pass, fail or pending.
package checks
