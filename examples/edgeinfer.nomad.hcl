# edgeinfer: the demo edge "inference" service (dev-cluster/edgeinfer).
#
# An ordinary Nomad system job with raw_exec. fleetplan compiles it into the
# two slot jobs edgeinfer-blue and edgeinfer-green; the job itself knows
# nothing about fleetplan. The dev cluster installs the binary on every device
# under the node meta `edge.bin_dir`.
job "edgeinfer" {
  datacenters = ["dc1"]
  type        = "system"

  group "edgeinfer" {
    network {
      port "http" {}
    }

    service {
      name     = "edgeinfer"
      port     = "http"
      provider = "consul"
      address  = "${NOMAD_IP_http}"
    }

    restart {
      attempts = 2
      interval = "1m"
      delay    = "2s"
      mode     = "delay"
    }

    task "edgeinfer" {
      driver = "raw_exec"

      config {
        command = "${meta.edge.bin_dir}/edgeinfer"
        args    = ["-addr", "${NOMAD_IP_http}:${NOMAD_PORT_http}"]
      }

      # The node's name, for per-node fault injection (EDGEINFER_FAULT_NODES).
      env {
        EDGEINFER_NODE = "${node.unique.name}"
      }

      resources {
        cpu    = 50
        memory = 32
      }
    }
  }
}
