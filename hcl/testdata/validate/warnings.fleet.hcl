# Valid, with every warning the language gives.
rollout "detector" {
  fleet {
    selector = "Meta.fleet == \"vision\""
  }

  release {
    jobspec = "../app.nomad.hcl"
    version = "2.4.1"
  }

  canary {
    percent  = 5
    soak     = "30s"
    approval = "auto"
  }

  wave {
    percent = 100
    soak    = "45s"
  }

  health {
    system {
      max_temperature_c = 20
    }

    application {
      port           = "web"
      interval       = "2s"
      timeout        = "3s"
      expect_version = false
    }
  }

  rollback {
    max_failure_percent = 2
  }

  offline {
    catch_up = false
  }
}
