# fleetplan device agent (fleetplan agent): reads its own Nomad client.
# See README.md.

# agent/connectivity.go and command/agent.go: /v1/agent/self of the local
# Nomad client (client status, heartbeat; which Consul agent it uses).
agent {
  policy = "read"
}

# agent/connectivity.go: Nodes().Info (the node's status as the servers
# see it).
node {
  policy = "read"
}

# agent/reconcile.go: Allocations().Info (which application an instance
# belongs to, from its allocation's job meta).
namespace "default" {
  capabilities = ["read-job"]
}
