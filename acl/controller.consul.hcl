# fleetplan controller: rollout state, audit trail, registry and agent
# configs under fleetplan/ (check-and-set writes, transactions), the
# controller lock (a session), and health/catalog reads. See README.md.
key_prefix "fleetplan/" {
  policy = "write"
}

# store/lock.go: Session().Create/Renew/Destroy (sessions are bound to the
# node of the Consul agent the controller talks to).
session_prefix "" {
  policy = "write"
}

# checks/source.go Health().State/Service, registry/observe.go
# Health().State and /v1/agent/members.
node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}
