# Waves written as step sizes instead of cumulative shares, and soaks missing
# or zero.
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
    percent = 10
    soak    = "10m"
  }

  wave {
    percent = 40
    soak    = "0s"
  }

  wave {
    percent = 25
    soak    = "10m"
  }

  wave {
    percent = 23
  }

  health {
    application {}
  }

  rollback {
    max_failure_percent = 2
  }
}
