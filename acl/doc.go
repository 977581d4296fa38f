// Package acl holds fleetplan's least-privilege ACL policies for Nomad and
// Consul (the *.hcl files next to this one; README.md says why each
// permission is needed) and, behind the build tag integration, the test
// that runs a rollout and a rollback on the dev cluster in ACL mode with
// only those tokens (`make test-acl`).
package acl
