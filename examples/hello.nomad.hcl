# hello: an application fleetplan has never seen — a few lines of Python,
# nothing of fleetplan in it. Any system job whose health endpoint follows the
# contract can be rolled out: GET /health answers 200 with
# {"status": "healthy|degraded|unhealthy", "version": "...", "checks": {...}}.
job "hello" {
  datacenters = ["dc1"]
  type        = "system"

  group "web" {
    network {
      port "http" {}
    }

    service {
      name    = "hello"
      port    = "http"
      address = "${NOMAD_IP_http}"
    }

    task "web" {
      driver = "raw_exec"

      config {
        command = "python3"
        args    = ["${NOMAD_TASK_DIR}/server.py"]
      }

      template {
        destination = "local/server.py"
        data        = <<EOT
import http.server, json, os
VERSION = os.environ.get("NOMAD_META_fleetplan_version", "0")  # verbatim: the version contract
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/health":
            self.send_error(404)
            return
        body = json.dumps({"status": os.environ.get("HELLO_STATUS", "healthy"), "version": VERSION, "checks": {}}).encode()
        self.send_response(503 if os.environ.get("HELLO_STATUS") == "unhealthy" else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.HTTPServer((os.environ["NOMAD_IP_http"], int(os.environ["NOMAD_PORT_http"])), H).serve_forever()
EOT
      }

      resources {
        cpu    = 20
        memory = 32
      }
    }
  }
}
