# Values out of range, of the wrong type, or that do not parse.
rollout "detector" {
  fleet {
    selector    = "Meta.fleet == \"vision\""
    datacenters = "dc1"
  }

  release {
    jobspec = "../app.nomad.hcl"
    version = "2.4.1"
    env = {
      "LOG-LEVEL" = "info"
    }
  }

  strategy     = "canary_rolling"
  max_parallel = 0

  canary {
    percent       = "2%"
    min_per_class = 0
    soak          = "15 minutes"
    approval      = "later"
  }

  wave {
    percent = 100
    soak    = 600
  }

  health {
    grace = "-10s"

    system {
      max_cpu_percent   = 120
      max_temperature_c = 185
    }

    application {
      path     = "health"
      interval = "1d"
    }

    functional {
      probe  = "http-json"
      input  = "{image: cat.jpg}"
      expect = {}
    }
  }

  rollback {
    max_failure_percent = 2
    max_error_rate      = 5
    scope               = "everything"
  }

  offline {
    max_offline_percent = 150
  }
}
