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
  policy = "write"
}

# Blue-green traffic (jobs/traffic.go): one catalog entry per device and
# service on the Consul node "fleetplan-traffic", tagged "live"
# (Catalog().Register/Deregister). Registering a service in the catalog
# needs node write on that node and service write on the application's
# service name; the names are the applications', so service_prefix "" above
# is write (read would do otherwise). Narrow it to your applications'
# service names when you know them, e.g. service "edgeinfer" { policy = "write" }.
node "fleetplan-traffic" {
  policy = "write"
}
