# Notify blocks with one problem each: every diagnostic at its place.
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
    percent = 100
    soak    = "10m"
  }

  health {
    application {
      port = "http"
    }
  }

  rollback {
    max_failure_percent = 2
  }

  notify "slak" "oncall" {
    url = "https://pager.example.com/x"
  }

  notify "webhook" "ops" {
    url    = "https://hooks.example.com/fleet"
    events = ["approval-needed", "rollbak"]
  }

  notify "webhook" "nourl" {
    headers = { Authorization = "Bearer ${env.OPS_HOOK_TOKEN}" }
  }

  notify "webhook" "plain" {
    url = "http://hooks.example.com/fleet"
  }

  notify "slack" "team" {
    url   = var.slack_url
    level = "info"
  }

  notify "log" "ops" {}

  notify "webhook" "literal" {
    url     = "https://hooks.example.com/fleet"
    headers = { Authorization = "Bearer s3cr3t" }
  }

  notify "webhook" "fn" {
    url = jsonencode(env.HOOK_URL)
  }
}
