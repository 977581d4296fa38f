# detector: a complete rollout policy, with every block and attribute
# fleetplan knows, documented. Start from this file for a real fleet.
#
# Check it with:   fleetplan validate examples/detector.fleet.hcl
# Format it with:  fleetplan fmt -write examples/detector.fleet.hcl
#
# Durations are strings with a unit: "250ms", "30s", "15m", "1h30m".
# Percentages are plain numbers of percent of the fleet: 2, 12.5, 100.

# One rollout block per application. The label is the application's name:
# fleetplan runs it as two Nomad system jobs, detector-blue and
# detector-green, and moves devices between them.
rollout "detector" {
  # Which devices the rollout covers (required).
  fleet {
    # A Nomad node filter expression (required).
    selector = "Meta.fleet == \"vision\""
    # Datacenters the jobs run in (optional; default: the jobspec's).
    datacenters = ["dc1"]
  }

  # What is rolled out (required).
  release {
    # The application's Nomad jobspec, relative to this file (required). It
    # is an ordinary system job; fleetplan compiles it into the two slots.
    jobspec = "edgeinfer.nomad.hcl"
    # The version being rolled out (required). The application must report
    # it in the "version" field of its health endpoint.
    version = "2.4.1"
    # Environment added to every task (optional).
    env = {
      LOG_LEVEL = "info"
    }

    # Per node class overrides (optional). The label is the Nomad node class
    # (node_class in the client configuration); each class gets its own
    # artifact variant.
    variant "jetson" {
      env = {
        MODEL = "yolo-trt-fp16"
      }
    }

    variant "rpi" {
      env = {
        MODEL = "yolo-tflite-int8"
      }
    }

    variant "gateway" {
      env = {
        MODEL = "yolo-onnx-fp32"
      }
    }
  }

  # How devices move between the two slots (optional):
  #   canary-rolling  canary, approval, then the waves below (default)
  #   blue-green      the new version starts beside the old one; rollback is
  #                   stopping it (needs twice the resources)
  #   rolling-update  equal-sized waves after the canary
  #   a-b             the last wave is the share of the fleet that keeps the
  #                   new version beside the old one, for comparison
  # "big-bang" (everything at once) is rejected.
  strategy = "canary-rolling"

  # Device switches in flight at once (optional; default 10; 1 to 1000).
  max_parallel = 25

  # The first stage of every rollout (required); nothing skips it.
  canary {
    # Share of the fleet, 1 to 5 (required).
    percent = 2
    # At least this many devices of every node class (optional; default 1).
    min_per_class = 1
    # How long the canary runs, health watched, before its gate (required).
    # Under a minute gives a warning.
    soak = "15m"
    # Who lets the rollout leave the canary (optional): "manual" (default)
    # or "auto" (a warning: the field wants a human to look at the canary).
    approval = "manual"
  }

  # The waves after the canary (one or more). percent is cumulative: the
  # share of the fleet that runs the new version once the wave is through.
  # It grows from wave to wave, starts above the canary's and ends at 100.
  # Each wave starts only after the previous one passed its gate.
  wave {
    percent = 10
    soak    = "10m"
  }

  wave {
    percent = 50
    soak    = "10m"
  }

  wave {
    percent = 100
    soak    = "10m"
  }

  # The health layers that gate every stage (required).
  health {
    # Time a freshly switched device gets before its checks count
    # (optional; default "30s").
    grace = "30s"

    # Layer 1: Nomad node status, Consul agent liveness, heartbeat age
    # (optional block).
    connectivity {
      # A device whose heartbeat is older counts as disconnected
      # (optional; default "30s").
      heartbeat_timeout = "30s"
    }

    # Layer 2: resource thresholds, measured by the fleetplan device agent
    # (optional block). Percentages of capacity, 0 to 100; 0 or absent turns
    # a check off. Temperature in degrees Celsius.
    system {
      max_cpu_percent    = 90
      max_memory_percent = 90
      max_disk_percent   = 95
      max_temperature_c  = 85
    }

    # Layer 3: the application's own health endpoint (required: a ping is
    # not a health check). It must answer 200 with
    # {"status": "healthy|degraded|unhealthy", "version": "...", "checks": {...}}.
    application {
      # Port label of the jobspec's network block (optional; default "http").
      port = "http"
      # (optional; default "/health")
      path = "/health"
      # (optional; defaults "5s" and "2s"; timeout below interval)
      interval = "5s"
      timeout  = "2s"
      # The reported version must equal release.version (optional; default
      # true; false gives a warning).
      expect_version = true
      # Task restarts tolerated before the device counts as crash looping
      # (optional; default 3).
      max_restarts = 3
    }

    # Layer 4: the application gives the expected output for a test input
    # (optional block).
    functional {
      # The probe plugin (required), one built into the device agent:
      # "http-json" POSTs the input as JSON and checks the answer (it takes
      # path, input or input_file, expect, max_latency); "tcp" only connects
      # to the port; "exec" runs a check program (exit 0 passing, 1
      # warning, else critical) and takes
      #   command = "infer-selftest"      # required: a NAME of the allow-list
      #                                   # in each agent's own configuration,
      #                                   # never a program or command line
      #   args    = ["--model", "yolo"]   # optional, given to that program
      # The agents get their allow-list locally, e.g.
      #   fleetplan agent install -exec-allow 'infer-selftest=${meta.edge.bin_dir}/selftest,30s'
      # (timeout 10s by default); a name no agent allows is a critical
      # check on that device, and nothing runs.
      # An attribute the probe does not use is an error.
      probe = "http-json"
      # (optional; a plain path on the instance: starts with "/", no host,
      # "//", "@" or "\")
      path = "/infer"
      # The test input (optional), inline or as input_file, a file relative
      # to this policy (not both). For http-json it must be JSON.
      input = jsonencode({ image = "cat.jpg" })
      # Fields the answer must contain, with their values (required for
      # http-json).
      expect = { label = "cat" }
      # Slowest acceptable answer (optional).
      max_latency = "250ms"
      # How often the input is sent (optional; default "30s").
      interval = "30s"
    }
  }

  # Automatic rollback triggers (required): crossing any of them rolls back
  # with no human in the loop. 0 or absent turns an optional trigger off.
  rollback {
    # Share of the devices a wave attempted that may fail, 0 to 100
    # (required; 0 rolls back on the first failed device).
    max_failure_percent = 2
    # Share of failed requests, a fraction 0 to 1 (optional).
    max_error_rate = 0.02
    # p95 latency increase over the old version, in percent (optional).
    max_p95_latency_increase_percent = 20
    # Share of the devices a wave switched that may then drop offline, 0 to
    # 100 (optional; default max_failure_percent). Devices offline before
    # their switch are skipped and never count.
    max_offline_after_switch_percent = 5
    # What a rollback takes back (optional): "wave" (default), the devices
    # of the failing wave, or "fleet", every device moved so far.
    scope = "wave"
  }

  # Devices that cannot be reached (optional block). They are skipped and
  # tracked, never counted as failed.
  offline {
    # Move returning devices through the same gates later (optional;
    # default true; false gives a warning).
    catch_up = true
    # Pause the rollout when more of the fleet is offline, 0 to 100
    # (optional; 0 or absent: no limit).
    max_offline_percent = 20
  }

  # Who is told about the rollout (optional; any number of notify blocks).
  # Labels: the type (webhook, slack or log) and a name of your choice, used
  # in logs and errors. A notify block may also be written at the top level
  # of the file, outside the rollout blocks: every rollout of the file gets it. Whichever controller runs the rollout (`fleetplan
  # apply`, or the controller service) notifies, without ever blocking the
  # rollout: each notifier has its own bounded queue.
  #
  # Secrets never go in the policy. url and header values may reference
  #   env.NAME                  an environment variable of the controller
  #   nomad_var("path", "item") an item of a Nomad Variable
  # alone or inside a string ("Bearer ${env.OPS_HOOK_TOKEN}"). The rollout
  # keeps the references only; the values are read when the notifier is
  # built and are redacted from every error and log line.
  #
  # events (optional; default all of them):
  #   approval-needed  the canary passed its gate and waits for `fleetplan approve`
  #   phase            the rollout moved on: a gate passed, approved, paused, resumed
  #   rollback         a rollback began or ended (with the failure analysis)
  #   halted           the rollout stopped for an operator (with what to do)
  #   done             every device runs the new version
  notify "webhook" "ops" {
    # Where the notification is POSTed as JSON (required; https://, or
    # http:// to a loopback address only, else a warning).
    url = "https://hooks.example.com/fleet"
    # Extra request headers (optional).
    headers = {
      Authorization = "Bearer ${env.OPS_HOOK_TOKEN}"
    }
    events = ["approval-needed", "rollback", "halted", "done"]
    # One delivery, retries included (optional; default "30s"). Network
    # errors, 429 and 5xx answers are retried with backoff, honouring
    # Retry-After; other 4xx answers are not.
    timeout = "30s"
  }

  # A chat message ({text, blocks}) to a Slack or Mattermost incoming
  # webhook, whose URL is its credential: reference it.
  notify "slack" "team" {
    url    = nomad_var("fleetplan/notify", "slack_url")
    events = ["approval-needed", "rollback", "halted", "done"]
  }

  # One log line per notification in the controller's log (level optional:
  # trace, debug, info (default), warn or error).
  notify "log" "audit" {
    level = "info"
  }
}
