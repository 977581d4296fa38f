# fleetplan operator (status, report, audit, approve, pause, resume,
# rollback of a rollout a controller runs). See README.md.
namespace "default" {
  capabilities = ["list-jobs", "read-job"]
}

node {
  policy = "read"
}
