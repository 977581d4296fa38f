# An all-at-once deployment, as someone used to other tools would write it.
rollout "hotfix" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  release {
    jobspec = "../app.nomad.hcl"
    version = "2.4.2"
  }

  strategy = "big-bang"

  wave {
    percent = 100
    soak    = "5m"
  }

  health {
    application {}
  }

  rollback {
    max_failure_percent = 5
  }
}
