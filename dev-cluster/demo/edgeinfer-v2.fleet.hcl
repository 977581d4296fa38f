# Demo policy, v2: a good release; goes through canary, approval and waves.
# Used by dev-cluster/demo.sh (make demo). The soaks are seconds, not the
# minutes a real fleet needs, so `fleetplan validate` warns about them.
rollout "edgeinfer" {
  fleet {
    selector    = "Meta.fleet == \"vision\""
    datacenters = ["dc1"]
  }

  release {
    jobspec = "../../examples/edgeinfer.nomad.hcl"
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
  max_parallel = 3

  canary {
    percent       = 5
    min_per_class = 1
    soak          = "15s"
    approval      = "manual"
  }

  wave {
    percent = 50
    soak    = "10s"
  }

  wave {
    percent = 100
    soak    = "10s"
  }

  health {
    grace = "10s"

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
      interval    = "3s"
    }
  }

  rollback {
    max_failure_percent              = 0
    max_error_rate                   = 0.05
    max_p95_latency_increase_percent = 100
    scope                            = "fleet"
  }

  offline {
    catch_up            = true
    max_offline_percent = 50
  }
}
