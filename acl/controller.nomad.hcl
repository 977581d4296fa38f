# fleetplan controller (fleetplan apply, rollback, catch-up, controller):
# compiles and registers the slot jobs, switches devices through dynamic
# node metadata, stops the old slot's allocations. See README.md.
namespace "default" {
  capabilities = [
    "list-jobs",       # checks.Source: Jobs().List (slot jobs of the app)
    "read-job",        # Jobs().Info/Versions/Allocations, Allocations().Info
    "submit-job",      # Jobs().Register/Plan/Deregister (slot jobs, RetireCandidate)
    "parse-job",       # /v1/jobs/parse (jobs/parse.go: the release's jobspec)
    "alloc-lifecycle", # Allocations().Stop (the old slot's allocation on a switched device)
  ]

  # notify/secret.go: the secrets of the policies' notify blocks,
  # nomad_var("fleetplan/notify...", "item"), read when a run builds its
  # notifiers (controller/runner.go, command/notify.go). Keep notification
  # secrets under this path, or add the paths your policies name.
  variables {
    path "fleetplan/notify" {
      capabilities = ["read"]
    }
    path "fleetplan/notify/*" {
      capabilities = ["read"]
    }
  }
}

# Nodes().List/Info read; /v1/client/metadata (dynamic node metadata, the
# slot switch) needs node write.
node {
  policy = "write"
}
