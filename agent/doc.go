// Package agent is the fleetplan device agent (`fleetplan agent`): it runs
// on every device as the Nomad system job fleetplan-agent (jobs.AgentJob),
// serves probe endpoints over HTTP and registers Consul HTTP checks on
// them in the device's own Consul agent, so that every device's health is
// in Consul by layer and the watcher (package checks) reads it with
// blocking queries instead of polling devices.
//
// # Checks
//
// Node checks (no ServiceID), registered once per device:
//
//	ID                          name                         endpoint
//	fleetplan-L1-connectivity   fleetplan L1 connectivity    /v1/probe/connectivity
//	fleetplan-L2-system         fleetplan L2 system          /v1/probe/system
//
// Service checks, one set per fleetplan-managed service instance on the
// device (a service tagged fleetplan-slot=<slot> that carries Nomad's
// "fleetplan L3 application" check, i.e. the service of the health port):
//
//	ID                          name                              endpoint
//	fleetplan-L3-<service ID>   fleetplan L3 version and metrics  /v1/probe/application?service=<service ID>
//	fleetplan-L4-<service ID>   fleetplan L4 functional           /v1/probe/functional?service=<service ID>
//
// The layer 4 check exists only when the application's config has a
// functional block. The layer 3 check is not named "fleetplan L3
// application" because Nomad registers a check of that name on the same
// service (jobs.Compile). Every check's Notes state its thresholds. The
// agent owns every check whose ID starts with "fleetplan-L" on its Consul
// agent: it deregisters the ones of instances that went away, and all of
// them when it stops (SIGINT, SIGTERM).
//
// Intervals: node checks every 5 s (-check-interval) with a 3 s timeout;
// layer 3 at the policy's health.application interval; layer 4 at the
// functional block's interval. Consul starts a new check as critical and
// runs it first within one interval.
//
// # Verdicts and outputs
//
// Every endpoint answers 200 (passing), 429 (warning) or 503 (critical),
// Consul's reading of an HTTP check, with a plain-text body a person can
// read: the first line is the verdict and why ("critical: cpu 93.0% is at
// or above its limit 90%"), the next lines the measured numbers and the
// limits they were compared with.
//
// Layer 1: the device's Nomad client must answer, the servers must report
// its node ready (read through the client), and its last heartbeat must be
// younger than the policy's connectivity.heartbeat_timeout (when a policy
// gives one; else a heartbeat older than its TTL warns). Draining or
// ineligible warns.
//
// Layer 2: CPU (from /proc/stat deltas, averaged over about 15 s), memory
// (MemTotal - MemAvailable of /proc/meminfo), disk (statfs of -disk-path,
// used / (used + available) like df) and temperature (the hottest
// /sys/class/thermal/thermal_zone*/temp; "n/a" when the device has none).
// A metric at or above its limit is critical, within 5 points (5 °C) below
// it a warning. The limits are, per metric, the strictest that the
// policies of the applications on the device set (when no application runs
// there yet: of every configured application), else the agent's defaults:
// 90 % CPU, 90 % memory, 95 % disk, 85 °C, changed with -default-system
// ("cpu=off" leaves CPU unchecked unless a policy sets it: the dev
// cluster's devices share one busy host whose CPU says nothing about a
// device).
//
// Layer 4: the functional block's probe plugin (plugin.NewProbe, e.g.
// http-json; exec only through the allow-list below) against the instance; the output is the verdict followed by
// the probe's own output (which names a wrong field and the latency
// against max_latency).
//
// # The layer 3 output contract
//
// The "fleetplan L3 version and metrics" check fetches the instance's
// health endpoint (the policy's health.application path, /health by
// default): healthy passes, degraded warns, unhealthy, a non-2xx answer, an
// answer that is not the health JSON, or (with expect_version) a version
// other than the instance's fleetplan-version tag fails. Then it reads the
// instance's metrics (the policy's metrics block: fleetplan's JSON record
// at /metrics by default, or the Prometheus text format) and judges the
// policy's metric triggers on the device (edge.go): max_error_rate,
// max_p95_latency_increase_percent against the device's own pre-switch
// baseline (without one, functional.max_latency), memory at twice the
// baseline, and resource trends projected past their limit. The output has
// these lines:
//
//	critical: error rate 0.072 > max_error_rate 0.05 (rollback trigger); healthy; version 2.0.0 as released (fleetplan-version=2.0.0); GET http://127.0.0.1:20123/health: 200
//	health: {"status":"healthy","version":"2.0.0","build":"2.0.0+r1","checks":{"model":"loaded"}}
//
// Line 1 is the verdict, the findings' reasons first, and never contains
// '{' or '}', so the first JSON object of the output is the application's
// health answer (compacted, cut at 2 KiB): checks.ParseCheckOutput reads
// status and version from it as from Nomad's own layer 3 check. The health
// line is missing when the application did not answer with JSON. A trigger
// whose figure is missing warns ("not measured" and why).
//
// The output holds no number that changes at every run, and a probe
// endpoint serves the same body as long as its status and its verdict line
// (numbers aside) stay the same (stableKey): Consul forwards an
// output-only change at most every check_update_interval. The numbers
// travel in the device summary (summary.go, contract.Summary); for a sample
// outside Consul, GET /v1/metrics?service=<service ID> answers them as JSON.
//
// # Configuration
//
// Per application, JSON at Consul KV <prefix>/<app> (prefix
// fleetplan/agent/apps by default), an AppConfig written by `fleetplan
// apply` through WriteAppConfig; the agent follows the folder with a
// blocking query. An instance's application is the slot job's meta
// fleetplan_app (read from the allocation through the device's Nomad
// client, or from the service meta when present). An instance whose
// application has no config yet gets a layer 3 check with the defaults
// (GET /health, version checked) and no layer 4 check.
//
// -app limits the per-instance checks to some applications (the agent
// then leaves the checks of other applications' instances alone).
//
// The device's own agents: -nomad-addr (the job passes the address the
// Nomad client advertises) and -consul-addr (the job passes the node meta
// consul.http_addr through FLEETPLAN_AGENT_CONSUL_ADDR; when it is empty or
// an unresolved ${...}, `fleetplan agent` asks the Nomad client's
// /v1/agent/self which Consul agent the client uses).
//
// Other endpoints: /v1/status (node, instances, configs, JSON), /v1/health
// (the agent itself).
//
// # Access (invariant I11)
//
// Every endpoint but /v1/health answers 401 unless the request carries
// "Authorization: Bearer <token>", the token the agent makes at start (32
// random bytes, hex) and puts in the Header of every check it registers,
// so only its own Consul checks (and whoever may read those check
// definitions in Consul) can call it; nobody else makes it run a probe.
// Paths from KV (health_path, a probe's path) must be plain absolute paths
// (ValidProbePath); URLs are built from the instance's own address and
// port, and redirects are not followed.
//
// # The exec probe (invariant I10)
//
// A functional block with probe "exec" names a command (a name, never a
// program) and args. The agent maps the name to a program of its own
// allow-list, -exec-allow NAME=/path[,timeout] (repeatable, timeout 10 s
// by default; the check's Consul timeout is that plus a second); a name
// not in it is a critical check "command NAME is not in this agent's
// allow-list (set -exec-allow NAME=/path; ...)", and nothing runs.
package agent
