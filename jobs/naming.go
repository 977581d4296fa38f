package jobs

import "strings"

// DefaultNamespace is Nomad's default namespace.
const DefaultNamespace = "default"

// QualifiedName is the name of a rollout of the application app in the
// Nomad namespace ns: app itself in the default namespace (or none), else
// "app.ns". Everything fleetplan names after a rollout follows it: the slot
// jobs (contract.SlotJobID: "app.ns-blue"), the devices' slot metadata
// (contract.SlotMetaKey: "fleetplan.app.ns.slot"), the rollout's Consul KV
// folder (store.Layout: "<root>rollouts/app.ns/") and the agents'
// configuration of it, so that one application name in two namespaces
// never shares a node metadata key or a KV key. Policy names cannot
// contain "." (hcl's rollout name rule) and Nomad namespace names cannot
// either, so the qualified name is unambiguous; a name that already has a
// "." is returned as it is (an operator may name the qualified rollout).
func QualifiedName(app, ns string) string {
	if ns == "" || ns == DefaultNamespace || strings.Contains(app, ".") {
		return app
	}
	return app + "." + ns
}
