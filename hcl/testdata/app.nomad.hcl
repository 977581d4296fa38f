# A minimal Nomad system job for the policy tests: one port labelled "http".
job "detector" {
  datacenters = ["dc1"]
  type        = "system"

  group "detector" {
    network {
      port "http" {}
    }

    task "detector" {
      driver = "raw_exec"

      config {
        command = "/usr/local/bin/detector"
      }
    }
  }
}
