# edgeinfer: the demo rollout on the local dev cluster (dev-cluster/).
#
# The dev cluster has a handful of devices of three node classes (jetson, rpi,
# gateway), so the soaks here are seconds rather than the minutes a real
# fleet needs: `fleetplan validate` warns about them, which is expected for
# this file. The demo passes -auto-approve to leave the canary.
#
#   fleetplan validate examples/edgeinfer.fleet.hcl
#   fleetplan apply -auto-approve examples/edgeinfer.fleet.hcl
rollout "edgeinfer" {
  fleet {
    selector    = "Meta.fleet == \"vision\""
    datacenters = ["dc1"]
  }

  release {
    jobspec = "edgeinfer.nomad.hcl"
    version = "2.0.0"
    env = {
      LOG_LEVEL = "info"
    }

    variant "jetson" {
      env = {
        MODEL = "edgeinfer-trt-fp16"
      }
    }
  }

  strategy     = "canary-rolling"
  max_parallel = 2

  canary {
    percent       = 5
    min_per_class = 1
    soak          = "20s"
    approval      = "manual"
  }

  wave {
    percent = 50
    soak    = "15s"
  }

  wave {
    percent = 100
    soak    = "15s"
  }

  health {
    grace = "5s"

    application {
      port           = "http"
      path           = "/health"
      interval       = "2s"
      timeout        = "1s"
      expect_version = true
      max_restarts   = 2
    }

    functional {
      probe       = "http-json"
      path        = "/infer"
      input       = jsonencode({ image = "cat.jpg" })
      expect      = { label = "cat" }
      max_latency = "250ms"
      interval    = "5s"
    }
  }

  rollback {
    max_failure_percent              = 0
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 50
    scope                            = "wave"
  }

  offline {
    catch_up            = true
    max_offline_percent = 50
  }
}
