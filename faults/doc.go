// Package faults is fleetplan's fault-injection suite (build tag
// `integration`): seeded, randomized trials on the real dev cluster that
// kill the controller, restart the Nomad and Consul servers, inject API
// faults through a reverse proxy, freeze and power off devices and race
// controllers and operators, each followed by an invariant checker that
// reads the ground truth from Nomad and Consul (never fleetplan's own
// view). `make test-faults` runs it; see README.md.
package faults
