rollout "detector" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  canary {
    percent = 2
    soak    = "15m
  }
}
