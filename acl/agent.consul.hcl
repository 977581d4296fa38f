# fleetplan device agent: registers its checks on the device's own Consul
# agent and reads the application configs. See README.md.

# agent/agent.go: Agent().NodeName (/v1/agent/self).
agent_prefix "" {
  policy = "read"
}

# agent/reconcile.go: CheckRegister/CheckDeregister of the node checks
# (layers 1 and 2) need node write; Catalog().Node (agent/watch.go) reads.
# One token is shared by every device (it reaches them through one Nomad
# Variable), so it cannot be narrowed to one node name.
node_prefix "" {
  policy = "write"
}

# agent/reconcile.go: the layer 3 and 4 checks are attached to the
# application's service instances: service write on those services. Narrow
# the prefix to your applications' service names on a real fleet.
service_prefix "" {
  policy = "write"
}

# agent/watch.go: KV().List of the per-application health configs.
key_prefix "fleetplan/agent/apps/" {
  policy = "read"
}

# agent/summary.go: KV().Put of the device summaries, one key per
# application and device (<folder>/<app>/<node>).
key_prefix "fleetplan/agent/summaries/" {
  policy = "write"
}
