# Input refused before anything is done: unknown probes, probes configured
# with what they do not use, commands that are not allow-list names, and
# bounds on max_parallel and the offline-after-switch budget.
rollout "detector" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  release {
    jobspec = "../app.nomad.hcl"
    version = "2.4.1"
  }

  max_parallel = 5000

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

    functional {
      probe  = "http_json"
      path   = "/infer"
      expect = { label = "cat" }
    }
  }

  rollback {
    max_failure_percent              = 2
    max_offline_after_switch_percent = 150
  }
}

rollout "tracker" {
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
    percent = 100
    soak    = "10m"
  }

  health {
    application {}

    functional {
      probe   = "exec"
      command = "/usr/local/bin/check --model yolo"
      expect  = { label = "cat" }
    }
  }

  rollback {
    max_failure_percent = 2
  }
}
