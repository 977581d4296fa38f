# A valid policy: validate prints nothing but its success line.
rollout "detector" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  release {
    jobspec = "../app.nomad.hcl"
    version = "2.4.1"
  }

  canary {
    percent = 2
    soak    = "15m"
  }

  wave {
    percent = 25
    soak    = "10m"
  }

  wave {
    percent = 100
    soak    = "10m"
  }

  health {
    application {
      port = "http"
      path = "/health"
    }
  }

  rollback {
    max_failure_percent = 2
  }
}
