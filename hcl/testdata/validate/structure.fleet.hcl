# Unknown names, misplaced ones and missing parts.
rollout "detector" {
  max_paralel = 10
  soak        = "10m"

  fleet {
    selecter = "Meta.fleet == \"vision\""
  }

  release {
    version = "2.4.1"

    varient "jetson" {}
  }

  canary {
    percent = 2
    soak    = "15m"
  }

  canary {
    percent = 3
    soak    = "15m"
  }

  wave {
    percent = 100
  }

  health {
    aplication {
      path = "/health"
    }
    functional = {}
  }
}
