# The fleetplan controller service: runs every rollout submitted with
# `fleetplan apply` (a request in Consul KV) to the end, whatever happens to
# the operator's terminal. Two allocations on two different nodes: one
# leads (a Consul session lock on fleetplan/controller/leader), the other
# stands by and takes over within about the session TTL plus the lock
# delay (10.5-10.8 s measured with the defaults: the standby destroys the
# session of a leader whose heartbeat stayed still for a TTL) when the
# leader dies or freezes, at once when it stops gracefully.
#
#   fleetplan controller install              registers this job (the variables from the environment)
#   nomad job run -var command=/usr/local/bin/fleetplan deploy/fleetplan-controller.nomad.hcl
#
# On a real cluster run it on server-class nodes, not on the edge devices
# it rolls out to: set node_class (e.g. "server") so that the constraint
# below keeps it there. The dev cluster's only clients are the devices, so
# there the constraint is left out and distinct_hosts alone spreads the
# two allocations.

variable "command" {
  type        = string
  default     = "$${meta.edge.bin_dir}/fleetplan"
  description = "the fleetplan binary on the nodes"
}

variable "nomad_addr" {
  type        = string
  default     = "http://127.0.0.1:4646"
  description = "the Nomad API the controller uses (NOMAD_ADDR)"
}

variable "consul_addr" {
  type        = string
  default     = "127.0.0.1:8500"
  description = "the Consul API the controller uses (CONSUL_HTTP_ADDR)"
}

variable "node_class" {
  type        = string
  default     = ""
  description = "run only on nodes of this class (\"\": any node)"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "tokens_from_variable" {
  type        = bool
  default     = false
  description = "with ACLs on: read NOMAD_TOKEN and CONSUL_HTTP_TOKEN from the Nomad Variable nomad/jobs/fleetplan-controller (items nomad_token, consul_token)"
}

variable "log_level" {
  type    = string
  default = "info"
}

job "fleetplan-controller" {
  type        = "service"
  datacenters = var.datacenters

  meta {
    fleetplan_component = "controller"
  }

  group "controller" {
    count = 2

    # The two instances never share a node: a node that dies takes at most
    # the leader with it, and the standby elsewhere takes over.
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Server-class nodes only, when node_class is set.
    dynamic "constraint" {
      for_each = var.node_class == "" ? [] : [var.node_class]
      content {
        attribute = "$${node.class}"
        value     = constraint.value
      }
    }

    network {
      port "http" {}
    }

    # A controller that exits is started again on its node; after too many
    # failures Nomad places it elsewhere. Either way the other instance
    # leads meanwhile.
    restart {
      attempts = 5
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    reschedule {
      delay          = "10s"
      delay_function = "exponential"
      max_delay      = "2m"
      unlimited      = true
    }

    service {
      name     = "fleetplan-controller"
      port     = "http"
      provider = "consul"
      tags     = ["fleetplan"]

      # 200 for the leader and for a standby; 503 when the instance cannot
      # reach Consul. (No check_restart: a paused or partitioned leader is
      # fenced by its session, not restarted.)
      check {
        name     = "fleetplan controller health"
        type     = "http"
        path     = "/v1/health"
        interval = "5s"
        timeout  = "2s"
      }
    }

    task "controller" {
      driver = "raw_exec"

      config {
        command = var.command
        args = [
          "controller",
          "-http-addr", "$${NOMAD_ADDR_http}",
          "-log-level", var.log_level,
        ]
      }

      env {
        NOMAD_ADDR       = var.nomad_addr
        CONSUL_HTTP_ADDR = var.consul_addr
      }

      # Tokens (NOMAD_TOKEN, CONSUL_HTTP_TOKEN) are never written here nor
      # in the arguments. With ACLs on (tokens_from_variable, `fleetplan
      # controller install -token-from-variable`), they come from the Nomad
      # Variable nomad/jobs/fleetplan-controller, which the job's workload
      # identity reads, through a template into the task's environment; the
      # file is in the task's secrets folder. Write the Variable with the
      # controller's least-privilege tokens (acl/README.md).
      dynamic "template" {
        for_each = var.tokens_from_variable ? [1] : []
        content {
          destination = "secrets/fleetplan-controller.env"
          env         = true
          change_mode = "restart"
          perms       = "0600"
          data        = <<-EOT
            {{ with nomadVar "nomad/jobs/fleetplan-controller" }}
            NOMAD_TOKEN={{ .nomad_token }}
            CONSUL_HTTP_TOKEN={{ .consul_token }}
            {{ end }}
          EOT
        }
      }

      # SIGTERM: the controller stops its rollouts where they are and gives
      # its locks back, so the standby takes over at once.
      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      resources {
        cpu    = 100
        memory = 128
      }
    }
  }
}
