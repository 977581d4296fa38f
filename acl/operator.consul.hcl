# fleetplan operator: reads everything fleetplan keeps in Consul, writes
# requests and their audit records. See README.md.
key_prefix "fleetplan/" {
  policy = "read"
}

# approve/pause/resume/rollback write fleetplan/rollouts/<app>/control/*;
# resume of a halted rollout saves the rollout's state (under the lock).
# Consul key prefixes have no wildcards: to give an operator one
# application, write "fleetplan/rollouts/<app>/" instead.
key_prefix "fleetplan/rollouts/" {
  policy = "write"
}

# Every request is recorded in the audit trail (fleetplan/audit/<app>/).
key_prefix "fleetplan/audit/" {
  policy = "write"
}

# Registry reads keep the registry in sync (fleetplan/registry/, the
# events under fleetplan/registry-events/); quarantine/release write there.
key_prefix "fleetplan/registry/" {
  policy = "write"
}

key_prefix "fleetplan/registry-events/" {
  policy = "write"
}

# `recheck` asks the device agents for an immediate re-check: a
# check-and-set of "recheck" in the application's agent config.
key_prefix "fleetplan/agent/apps/" {
  policy = "write"
}

# resume (of a halted rollout) and rollback (when no controller runs) take
# the rollout's lock: a session.
session_prefix "" {
  policy = "write"
}

node_prefix "" {
  policy = "read"
}

service_prefix "" {
  policy = "read"
}

# `apply -local` of a blue-green rollout moves traffic itself (see
# controller.consul.hcl): node write on "fleetplan-traffic" and service
# write on the application's service name. Without them a blue-green
# rollout run from the operator's machine stops at its pre-flight
# checklist; through the controller service nothing more is needed here.
node "fleetplan-traffic" {
  policy = "write"
}
