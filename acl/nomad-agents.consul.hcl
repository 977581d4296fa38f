# Not fleetplan's: the Consul token of the Nomad servers and clients
# themselves (their consul { token = ... }), as the dev cluster in ACL
# mode sets it up. Nomad registers the jobs' services and checks in the
# local Consul agent and fingerprints it.
agent_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "write"
}
