# Read after valid.fleet.hcl: "detector" is taken.
rollout "detector" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  release {
    jobspec = "detector.nomad.hcl"
    version = "2.4.1"

    variant "jetson" {
      env = { MODEL = "yolo-trt-fp16" }
    }

    variant "jetson" {
      env = { MODEL = "yolo-trt-int8" }
    }
  }

  canary {
    percent = 2
    soak    = "15m"
  }

  wave {
    percent = 100
    soak    = "10m"
  }

  health {
    application {}
  }

  rollback {
    max_failure_percent = 2
  }
}
