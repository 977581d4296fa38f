package hcl

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// basePolicy is valid and draws no warning; every rule case below edits it.
// Its jobspec and input files are in testdata/, next to the name the cases
// are parsed as.
const basePolicy = `rollout "detector" {
  fleet {
    selector    = "Meta.fleet == \"vision\""
    datacenters = ["dc1"]
  }

  release {
    jobspec = "app.nomad.hcl"
    version = "2.4.1"
    env = {
      LOG_LEVEL = "info"
    }

    variant "jetson" {
      env = {
        MODEL = "yolo-trt-fp16"
      }
    }
  }

  strategy     = "canary-rolling"
  max_parallel = 25

  canary {
    percent       = 2
    min_per_class = 1
    soak          = "15m"
    approval      = "manual"
  }

  wave {
    percent = 10
    soak    = "10m"
  }

  wave {
    percent = 100
    soak    = "10m"
  }

  health {
    grace = "30s"
    connectivity {
      heartbeat_timeout = "30s"
    }
    system {
      max_cpu_percent    = 90
      max_memory_percent = 90
      max_disk_percent   = 95
      max_temperature_c  = 85
    }
    application {
      port           = "http"
      path           = "/health"
      interval       = "5s"
      timeout        = "2s"
      expect_version = true
      max_restarts   = 3
    }
    functional {
      probe       = "http-json"
      path        = "/infer"
      input       = "{\"image\": \"cat.jpg\"}"
      expect      = { label = "cat" }
      max_latency = "250ms"
      interval    = "30s"
    }
  }

  rollback {
    max_failure_percent              = 2
    max_error_rate                   = 0.02
    max_p95_latency_increase_percent = 20
    scope                            = "wave"
  }

  offline {
    catch_up            = true
    max_offline_percent = 20
  }
}
`

// caseFile is the name the rule cases are parsed as: relative paths resolve
// against testdata/.
const caseFile = "testdata/case.fleet.hcl"

// edit replaces old, which must occur exactly once in the base policy, with
// new. Expected diagnostics are written in new as comments on the line they
// must be reported at:
//
//	# want error "summary substring"
//	# want warning "summary substring"
type edit struct{ old, new string }

// Frequently edited lines of basePolicy.
const (
	rolloutLine = `rollout "detector" {`
	canaryBlock = `  canary {
    percent       = 2
    min_per_class = 1
    soak          = "15m"
    approval      = "manual"
  }
`
	wave1Block = `  wave {
    percent = 10
    soak    = "10m"
  }
`
	wave2Block = `  wave {
    percent = 100
    soak    = "10m"
  }
`
	applicationBlock = `    application {
      port           = "http"
      path           = "/health"
      interval       = "5s"
      timeout        = "2s"
      expect_version = true
      max_restarts   = 3
    }
`
	functionalBlock = `    functional {
      probe       = "http-json"
      path        = "/infer"
      input       = "{\"image\": \"cat.jpg\"}"
      expect      = { label = "cat" }
      max_latency = "250ms"
      interval    = "30s"
    }
`
	probeLine = `probe       = "http-json"`
)

// functional replaces the functional block with one of the given lines.
func functional(lines ...string) []edit {
	return []edit{{functionalBlock, "    functional {\n      " + strings.Join(lines, "\n      ") + "\n    }\n"}}
}

// manyArgs is an args list one item above maxExecArgs.
var manyArgs = "[" + strings.TrimSuffix(strings.Repeat(`"-v", `, maxExecArgs+1), ", ") + "]"

// missing removes a block and expects an error on the rollout's line.
func missing(block, want string) []edit {
	return []edit{
		{block, ""},
		{rolloutLine, rolloutLine + ` # want error "` + want + `"`},
	}
}

func replaceLine(old, new string) []edit { return []edit{{old, new}} }

var ruleCases = []struct {
	name  string
	edits []edit
}{
	// ---- valid policies ---------------------------------------------------
	{"valid: base policy", nil},
	{"valid: canary percent 1", replaceLine(`percent       = 2`, `percent       = 1`)},
	{"valid: canary percent 5", replaceLine(`percent       = 2`, `percent       = 5`)},
	{"valid: fractional canary percent", replaceLine(`percent       = 2`, `percent       = 2.5`)},
	{"valid: canary block with defaults only", []edit{{`    min_per_class = 1
`, ""}, {`    approval      = "manual"
`, ""}}},
	{"valid: soak of exactly one minute draws no warning", replaceLine(`soak          = "15m"`, `soak          = "1m"`)},
	{"valid: one wave at 100", []edit{{wave1Block, ""}}},
	{"valid: blue-green", replaceLine(`strategy     = "canary-rolling"`, `strategy     = "blue-green"`)},
	{"valid: rolling-update", replaceLine(`strategy     = "canary-rolling"`, `strategy     = "rolling-update"`)},
	{"valid: a-b keeps the last wave below 100", []edit{
		{`strategy     = "canary-rolling"`, `strategy     = "a-b"`},
		{wave2Block, "  wave {\n    percent = 50\n    soak    = \"10m\"\n  }\n"},
	}},
	{"valid: scope fleet", replaceLine(`scope                            = "wave"`, `scope                            = "fleet"`)},
	{"valid: no optional blocks", []edit{
		{`  offline {
    catch_up            = true
    max_offline_percent = 20
  }
`, ""},
		{`    connectivity {
      heartbeat_timeout = "30s"
    }
`, ""},
	}},
	{"valid: application block with defaults only", replaceLine(applicationBlock, "    application {}\n")},
	{"valid: prometheus metrics", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        format   = \"prometheus\"\n        requests = \"http_requests_total\"\n        errors   = \"http_requests_total{code=~\\\"5..\\\"}\"\n        latency  = \"http_request_duration_seconds\"\n      }\n")},
	{"valid: json metrics path", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        path = \"/stats\"\n      }\n")},

	{"valid: input_file", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, `input_file  = "cat.json"`)},
	{"valid: jsonencode input", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, `input       = jsonencode({ image = "cat.jpg" })`)},
	{"valid: zero thresholds turn checks off", replaceLine(`max_cpu_percent    = 90`, `max_cpu_percent    = 0`)},
	{"valid: two rollouts in one file", replaceLine("  offline {\n    catch_up            = true\n    max_offline_percent = 20\n  }\n}\n",
		"  offline {\n    catch_up            = true\n    max_offline_percent = 20\n  }\n}\n\n"+
			strings.Replace(basePolicy, `rollout "detector"`, `rollout "tracker"`, 1))},

	// ---- required blocks and attributes ------------------------------------
	{"missing canary", missing(canaryBlock, "Missing canary block")},
	{"missing rollback", missing(`  rollback {
    max_failure_percent              = 2
    max_error_rate                   = 0.02
    max_p95_latency_increase_percent = 20
    scope                            = "wave"
  }
`, "Missing rollback block")},
	{"missing fleet", missing(`  fleet {
    selector    = "Meta.fleet == \"vision\""
    datacenters = ["dc1"]
  }
`, "Missing fleet block")},
	{"missing release", missing(`  release {
    jobspec = "app.nomad.hcl"
    version = "2.4.1"
    env = {
      LOG_LEVEL = "info"
    }

    variant "jetson" {
      env = {
        MODEL = "yolo-trt-fp16"
      }
    }
  }
`, "Missing release block")},
	{"missing waves", missing(wave1Block+"\n"+wave2Block, "Missing wave block")},
	{"missing health.application", []edit{
		{applicationBlock, ""},
		{"  health {", `  health { # want error "Missing application block"`},
	}},
	{"missing jobspec", []edit{
		{`    jobspec = "app.nomad.hcl"` + "\n", ""},
		{"  release {", `  release { # want error "Missing required argument \"jobspec\""`},
	}},
	{"missing version", []edit{
		{`    version = "2.4.1"` + "\n", ""},
		{"  release {", `  release { # want error "Missing required argument \"version\""`},
	}},
	{"missing selector", []edit{
		{`    selector    = "Meta.fleet == \"vision\""` + "\n", ""},
		{"  fleet {", `  fleet { # want error "Missing required argument \"selector\""`},
	}},
	{"wave without soak", replaceLine(wave1Block, "  wave { # want error \"Missing required argument \\\"soak\\\"\"\n    percent = 10\n  }\n")},
	{"wave without percent", replaceLine(wave1Block, "  wave { # want error \"Missing required argument \\\"percent\\\"\"\n    soak = \"10m\"\n  }\n")},
	{"canary without percent", []edit{
		{"    percent       = 2\n", ""},
		{"  canary {", `  canary { # want error "Missing required argument \"percent\""`},
	}},
	{"canary without soak", []edit{
		{"    soak          = \"15m\"\n", ""},
		{"  canary {", `  canary { # want error "Missing required argument \"soak\""`},
	}},
	{"rollback without max_failure_percent", []edit{
		{"    max_failure_percent              = 2\n", ""},
		{"  rollback {", `  rollback { # want error "Missing required argument \"max_failure_percent\""`},
	}},
	{"functional without probe", []edit{
		{"      probe       = \"http-json\"\n", ""},
		{"    functional {", `    functional { # want error "Missing required argument \"probe\""`},
	}},
	{"functional without expect", []edit{
		{"      expect      = { label = \"cat\" }\n", ""},
		{"    functional {", `    functional { # want error "Missing required argument \"expect\""`},
	}},
	{"duplicate canary block", replaceLine(canaryBlock, canaryBlock+"  canary { # want error \"Duplicate canary block\"\n    percent = 3\n    soak = \"15m\"\n  }\n")},
	{"jobspec given instead of a policy", []edit{{basePolicy, "job \"detector\" { # want error \"Nomad jobspec given instead of a policy\"\n  type = \"system\"\n}\n"}}},
	{"file without rollout", []edit{{basePolicy, "# nothing here # want error \"No rollout block\"\n"}}},

	// ---- canary and waves ---------------------------------------------------
	{"canary percent above 5", replaceLine(`percent       = 2`, `percent       = 6 # want error "Invalid canary percent"`)},
	{"canary percent below 1", replaceLine(`percent       = 2`, `percent       = 0.5 # want error "Invalid canary percent"`)},
	{"canary percent 0", replaceLine(`percent       = 2`, `percent       = 0 # want error "Invalid canary percent"`)},
	{"canary of the whole fleet is a big bang", replaceLine(`percent       = 2`, `percent       = 100 # want error "Big-bang rollouts are not allowed"`)},
	{"min_per_class 0", replaceLine(`min_per_class = 1`, `min_per_class = 0 # want error "Invalid min_per_class"`)},
	{"waves not increasing", []edit{
		{"    percent = 10\n", "    percent = 60\n"},
		{wave2Block, "  wave {\n    percent = 40 # want error \"Waves not increasing\"\n    soak    = \"10m\"\n  }\n" + wave2Block},
	}},
	{"wave equal to the previous one", []edit{
		{wave2Block, "  wave {\n    percent = 10 # want error \"Waves not increasing\"\n    soak    = \"10m\"\n  }\n" + wave2Block},
	}},
	{"wave not above the canary", replaceLine("    percent = 10\n", "    percent = 2 # want error \"Wave not above the canary\"\n")},
	{"last wave not 100", replaceLine("    percent = 100\n", "    percent = 90 # want error \"Last wave does not reach 100\"\n")},
	{"wave above 100", replaceLine("    percent = 100\n", "    percent = 120 # want error \"Invalid wave percent\"\n")},
	{"wave at 0", replaceLine("    percent = 10\n", "    percent = 0 # want error \"Invalid wave percent\"\n")},
	{"a-b with the last wave at 100", []edit{
		{`strategy     = "canary-rolling"`, `strategy     = "a-b"`},
		{"    percent = 100\n", "    percent = 100 # want error \"A-B rollout leaves nothing to compare\"\n"},
	}},
	{"approval auto warns", replaceLine(`approval      = "manual"`, `approval      = "auto" # want warning "Canary approved automatically"`)},

	// ---- big bang -----------------------------------------------------------
	{"strategy big-bang", replaceLine(`strategy     = "canary-rolling"`, `strategy     = "big-bang" # want error "Big-bang rollouts are not allowed"`)},
	{"strategy all-at-once", replaceLine(`strategy     = "canary-rolling"`, `strategy     = "all-at-once" # want error "Big-bang rollouts are not allowed"`)},

	// ---- durations ----------------------------------------------------------
	{"soak that does not parse", replaceLine(`soak          = "15m"`, `soak          = "15 minutes" # want error "Invalid duration"`)},
	{"soak in days", replaceLine(`soak          = "15m"`, `soak          = "1d" # want error "Invalid duration"`)},
	{"soak without a unit", replaceLine(`soak          = "15m"`, `soak          = 900 # want error "Duration without a unit"`)},
	{"zero soak", replaceLine(`soak          = "15m"`, `soak          = "0s" # want error "Invalid soak"`)},
	{"negative soak", replaceLine(`soak          = "15m"`, `soak          = "-5m" # want error "Invalid soak"`)},
	{"short canary soak warns", replaceLine(`soak          = "15m"`, `soak          = "30s" # want warning "Short soak"`)},
	{"short wave soak warns", replaceLine(wave1Block, "  wave {\n    percent = 10\n    soak    = \"59s\" # want warning \"Short soak\"\n  }\n")},
	{"grace that does not parse", replaceLine(`grace = "30s"`, `grace = "soon" # want error "Invalid duration"`)},
	{"negative grace", replaceLine(`grace = "30s"`, `grace = "-1s" # want error "Invalid grace"`)},
	{"zero heartbeat_timeout", replaceLine(`heartbeat_timeout = "30s"`, `heartbeat_timeout = "0s" # want error "Invalid heartbeat_timeout"`)},
	{"zero interval", replaceLine(`interval       = "5s"`, `interval       = "0s" # want error "Invalid interval"`)},
	{"timeout not below interval warns", replaceLine(`timeout        = "2s"`, `timeout        = "5s" # want warning "timeout not below its interval"`)},
	{"check timeout under one second", replaceLine(`timeout        = "2s"`, `timeout        = "500ms" # want error "below one second"`)},
	{"bad max_latency", replaceLine(`max_latency = "250ms"`, `max_latency = "fast" # want error "Invalid duration"`)},

	// ---- thresholds ---------------------------------------------------------
	{"cpu threshold above 100", replaceLine(`max_cpu_percent    = 90`, `max_cpu_percent    = 101 # want error "Invalid max_cpu_percent"`)},
	{"memory threshold negative", replaceLine(`max_memory_percent = 90`, `max_memory_percent = -1 # want error "Invalid max_memory_percent"`)},
	{"disk threshold above 100", replaceLine(`max_disk_percent   = 95`, `max_disk_percent   = 195 # want error "Invalid max_disk_percent"`)},
	{"temperature in Fahrenheit", replaceLine(`max_temperature_c  = 85`, `max_temperature_c  = 185 # want error "Implausible temperature"`)},
	{"temperature too low warns", replaceLine(`max_temperature_c  = 85`, `max_temperature_c  = 25 # want warning "Very low temperature limit"`)},
	{"max_failure_percent above 100", replaceLine(`max_failure_percent              = 2`, `max_failure_percent              = 150 # want error "Invalid max_failure_percent"`)},
	{"max_error_rate as percent", replaceLine(`max_error_rate                   = 0.02`, `max_error_rate                   = 2 # want error "Invalid max_error_rate"`)},
	{"negative latency increase", replaceLine(`max_p95_latency_increase_percent = 20`, `max_p95_latency_increase_percent = -5 # want error "Invalid max_p95_latency_increase_percent"`)},
	{"max_offline_percent above 100", replaceLine(`max_offline_percent = 20`, `max_offline_percent = 120 # want error "Invalid max_offline_percent"`)},
	{"negative max_restarts", replaceLine(`max_restarts   = 3`, `max_restarts   = -1 # want error "Invalid max_restarts"`)},
	{"max_parallel 0", replaceLine(`max_parallel = 25`, `max_parallel = 0 # want error "Invalid max_parallel"`)},
	{"fractional max_parallel", replaceLine(`max_parallel = 25`, `max_parallel = 2.5 # want error "Whole number required"`)},

	// ---- enumerations -------------------------------------------------------
	{"unknown strategy", replaceLine(`strategy     = "canary-rolling"`, `strategy     = "canary_rolling" # want error "Unknown strategy"`)},
	{"unknown approval", replaceLine(`approval      = "manual"`, `approval      = "manul" # want error "Unknown approval"`)},
	{"unknown metrics format", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        format = \"prom\" # want error \"Unknown metrics format\"\n      }\n")},
	{"series selector with json metrics", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        requests = \"http_requests_total\" # want error \"Series selector without the prometheus format\"\n      }\n")},
	{"invalid series selector", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        format   = \"prometheus\"\n        requests = \"http_requests_total\"\n        errors   = \"http_requests_total{code=~5..}\" # want error \"Invalid series selector\"\n      }\n")},
	{"errors without requests", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        format = \"prometheus\" # want error \"Missing requests counter\"\n        errors = \"http_requests_total{code=\\\"500\\\"}\"\n      }\n")},
	{"prometheus without a mapping", replaceLine("      max_restarts   = 3\n", "      max_restarts   = 3\n      metrics {\n        format = \"prometheus\" # want error \"Prometheus metrics without a mapping\"\n      }\n")},
	{"unknown scope", replaceLine(`scope                            = "wave"`, `scope                            = "fleat" # want error "Unknown scope"`)},

	// ---- unknown names ------------------------------------------------------
	{"unknown attribute", replaceLine(`max_parallel = 25`, `max_paralel = 25 # want error "Unsupported argument"`)},
	{"unknown block", replaceLine("  health {", "  healthcheck { # want error \"Unsupported block type\"\n  }\n  health {")},
	{"attribute in the wrong block", replaceLine(`max_parallel = 25`, "max_parallel = 25\n  soak = \"1m\" # want error \"Unsupported argument\"")},
	{"block written as an attribute", []edit{
		{canaryBlock, "  canary = { percent = 2 } # want error \"Unsupported argument\"\n"},
		{rolloutLine, rolloutLine + ` # want error "Missing canary block"`},
	}},
	{"unknown attribute at the top level", replaceLine(rolloutLine, "strategy = \"canary-rolling\" # want error \"Unsupported argument\"\n"+rolloutLine)},

	// ---- release --------------------------------------------------------------
	{"jobspec not found", replaceLine(`jobspec = "app.nomad.hcl"`, `jobspec = "nope.nomad.hcl" # want error "Jobspec file not found"`)},
	{"jobspec that does not parse warns", replaceLine(`jobspec = "app.nomad.hcl"`, `jobspec = "broken.nomad.hcl" # want warning "Jobspec does not parse"`)},
	{"jobspec is a folder", replaceLine(`jobspec = "app.nomad.hcl"`, `jobspec = "." # want error "Unusable jobspec"`)},
	{"empty jobspec", replaceLine(`jobspec = "app.nomad.hcl"`, `jobspec = "" # want error "Empty jobspec"`)},
	{"version written as a number", replaceLine(`version = "2.4.1"`, `version = 2.40 # want error "Version written as a number"`)},
	{"version with spaces", replaceLine(`version = "2.4.1"`, `version = "2.4 beta" # want error "Invalid version"`)},
	{"version with build metadata", replaceLine(`version = "2.4.1"`, `version = "2.4.1+build.7" # want error "Version with build metadata"`)},
	{"valid: version with a pre-release", replaceLine(`version = "2.4.1"`, `version = "2.4.1-rc1"`)},
	{"empty selector", replaceLine(`selector    = "Meta.fleet == \"vision\""`, `selector    = " " # want error "Empty selector"`)},
	{"empty datacenter", replaceLine(`datacenters = ["dc1"]`, `datacenters = ["dc1", ""] # want error "Empty item in datacenters"`)},
	{"duplicate variant", replaceLine("    variant \"jetson\" {\n", "    variant \"jetson\" {}\n    variant \"jetson\" { # want error \"Duplicate variant\"\n")},
	{"bad environment variable name", replaceLine(`      LOG_LEVEL = "info"`, `      "LOG-LEVEL" = "info" # want error "Invalid environment variable name"`)},
	{"rollout without label", replaceLine(rolloutLine, `rollout { # want error "Missing application label"`)},
	{"rollout with two labels", replaceLine(rolloutLine, `rollout "detector" "v2" { # want error "Extraneous label"`)},
	{"canary with a label", replaceLine("  canary {", `  canary "first" { # want error "Unexpected label"`)},
	{"variant without label", replaceLine(`    variant "jetson" {`, `    variant { # want error "Missing class label"`)},
	{"invalid application name", replaceLine(rolloutLine, `rollout "my app" { # want error "Invalid application name"`)},
	{"duplicate rollout in one file", replaceLine("  offline {\n    catch_up            = true\n    max_offline_percent = 20\n  }\n}\n",
		"  offline {\n    catch_up            = true\n    max_offline_percent = 20\n  }\n}\n\n"+
			strings.Replace(basePolicy, rolloutLine, rolloutLine+` # want error "Duplicate rollout"`, 1))},

	// ---- health -------------------------------------------------------------
	{"health path without slash", replaceLine(`path           = "/health"`, `path           = "health" # want error "Invalid path"`)},
	{"port not in the jobspec warns", replaceLine(`port           = "http"`, `port           = "htp" # want warning "Port not found in the jobspec"`)},
	{"expect_version false warns", replaceLine(`expect_version = true`, `expect_version = false # want warning "Version not checked"`)},
	{"input and input_file", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, "input       = \"{}\"\n      input_file  = \"cat.json\" # want error \"Conflicting test inputs\"")},
	{"input_file not found", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, `input_file  = "dog.json" # want error "Unusable input_file"`)},
	{"input not JSON for http-json", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, `input       = "{image" # want error "Test input is not JSON"`)},
	{"input_file not JSON for http-json", replaceLine(`input       = "{\"image\": \"cat.jpg\"}"`, `input_file  = "notjson.txt" # want error "Test input is not JSON"`)},
	{"empty expect", replaceLine(`expect      = { label = "cat" }`, `expect      = {} # want error "Empty expect"`)},
	{"catch_up false warns", replaceLine(`catch_up            = true`, `catch_up            = false # want warning "Offline devices never caught up"`)},

	// ---- values -------------------------------------------------------------
	{"percent as a string with %", replaceLine(`percent       = 2`, `percent       = "2%" # want error "Percentage written as a string"`)},
	{"percent of the wrong type", replaceLine(`percent       = 2`, `percent       = [2] # want error "Incorrect value type"`)},
	{"null value", replaceLine(`percent       = 2`, `percent       = null # want error "Null value"`)},
	{"variables are not allowed", replaceLine(`version = "2.4.1"`, `version = var.version # want error "Variables not allowed"`)},
	{"env of the wrong type", replaceLine("    env = {\n      LOG_LEVEL = \"info\"\n    }\n", "    env = [\"LOG_LEVEL=info\"] # want error \"Incorrect value type\"\n")},
	{"syntax error", replaceLine(`max_parallel = 25`, `max_parallel = = 25 # want error "Invalid expression"`)},

	// ---- probes (invariant I10) ----------------------------------------------
	{"valid: exec probe with a command name and args", functional(`probe    = "exec"`, `command  = "infer-selftest"`, `args     = ["--model", "yolo", ""]`, `interval = "1m"`)},
	{"valid: exec probe with a command name only", functional(`probe   = "exec"`, `command = "infer.selftest_v2"`)},
	{"valid: tcp probe", functional(`probe    = "tcp"`, `interval = "10s"`)},
	{"unknown probe with an underscore", replaceLine(probeLine, `probe       = "http_json" # want error "Unknown probe"`)},
	{"unknown probe", replaceLine(probeLine, `probe       = "nonexistent" # want error "Unknown probe"`)},
	{"unknown probe of another case", replaceLine(probeLine, `probe       = "HTTP-JSON" # want error "Unknown probe"`)},
	{"empty probe", replaceLine(probeLine, `probe       = "" # want error "Empty probe"`)},
	{"exec without command", []edit{
		{functionalBlock, "    functional { # want error \"Missing required argument \\\"command\\\"\"\n      probe = \"exec\"\n    }\n"},
	}},
	{"exec with http-json's attributes", functional(
		`probe       = "exec"`,
		`command     = "infer-selftest"`,
		`path        = "/infer" # want error "Argument \"path\" not used by the exec probe"`,
		`input       = "{}" # want error "Argument \"input\" not used by the exec probe"`,
		`expect      = { label = "cat" } # want error "Argument \"expect\" not used by the exec probe"`,
		`max_latency = "250ms" # want error "Argument \"max_latency\" not used by the exec probe"`,
	)},
	{"exec with an input_file", functional(`probe      = "exec"`, `command    = "infer-selftest"`, `input_file = "cat.json" # want error "Argument \"input_file\" not used by the exec probe"`)},
	{"tcp with expect", functional(`probe  = "tcp"`, `expect = { label = "cat" } # want error "Argument \"expect\" not used by the tcp probe"`)},
	{"tcp with a command", functional(`probe   = "tcp"`, `command = "check" # want error "Argument \"command\" not used by the tcp probe"`)},
	{"http-json with a command", replaceLine(probeLine, probeLine+"\n      command     = \"infer-selftest\" # want error \"Argument \\\"command\\\" not used by the http-json probe\"")},
	{"http-json with args", replaceLine(probeLine, probeLine+"\n      args        = [\"-v\"] # want error \"Argument \\\"args\\\" not used by the http-json probe\"")},
	{"exec command given as a path", functional(`probe   = "exec"`, `command = "/usr/local/bin/infer-check" # want error "Invalid command name"`)},
	{"exec command given as a command line", functional(`probe   = "exec"`, `command = "infer-check --all" # want error "Invalid command name"`)},
	{"exec command that climbs folders", functional(`probe   = "exec"`, `command = ".." # want error "Invalid command name"`)},
	{"exec command too long", functional(`probe   = "exec"`, `command = "`+strings.Repeat("c", 65)+`" # want error "Invalid command name"`)},
	{"empty exec command", functional(`probe   = "exec"`, `command = "" # want error "Invalid command name"`)},
	{"exec args as a string", functional(`probe   = "exec"`, `command = "infer-selftest"`, `args    = "--all" # want error "Incorrect value type"`)},
	{"exec args with a NUL character", functional(`probe   = "exec"`, `command = "infer-selftest"`, `args    = ["a\u0000b"] # want error "Invalid args"`)},
	{"exec args too long", functional(`probe   = "exec"`, `command = "infer-selftest"`, `args    = ["`+strings.Repeat("a", maxExecArgLen+1)+`"] # want error "Invalid args"`)},
	{"too many exec args", functional(`probe   = "exec"`, `command = "infer-selftest"`, `args    = `+manyArgs+` # want error "Too many args"`)},

	// ---- bounds (invariants I6 and I10) -----------------------------------------
	{"valid: max_parallel 1000", replaceLine(`max_parallel = 25`, `max_parallel = 1000`)},
	{"max_parallel above 1000", replaceLine(`max_parallel = 25`, `max_parallel = 1001 # want error "Invalid max_parallel"`)},
	{"huge max_parallel", replaceLine(`max_parallel = 25`, `max_parallel = 1e9 # want error "Invalid max_parallel"`)},
	{"valid: max_offline_after_switch_percent", replaceLine(`max_failure_percent              = 2`, "max_failure_percent              = 2\n    max_offline_after_switch_percent = 10")},
	{"valid: max_offline_after_switch_percent 0", replaceLine(`max_failure_percent              = 2`, "max_failure_percent              = 2\n    max_offline_after_switch_percent = 0")},
	{"max_offline_after_switch_percent above 100", replaceLine(`max_failure_percent              = 2`, "max_failure_percent              = 2\n    max_offline_after_switch_percent = 150 # want error \"Invalid max_offline_after_switch_percent\"")},
	{"negative max_offline_after_switch_percent", replaceLine(`max_failure_percent              = 2`, "max_failure_percent              = 2\n    max_offline_after_switch_percent = -1 # want error \"Invalid max_offline_after_switch_percent\"")},
	{"max_offline_after_switch_percent as a string", replaceLine(`max_failure_percent              = 2`, "max_failure_percent              = 2\n    max_offline_after_switch_percent = \"5%\" # want error \"Percentage written as a string\"")},
	{"max_offline_after_switch_percent outside the rollback block", replaceLine(`max_parallel = 25`, "max_parallel = 25\n  max_offline_after_switch_percent = 5 # want error \"Unsupported argument\"")},

	// ---- every problem is reported, not only the first -------------------------
	{"several problems at once", []edit{
		{`strategy     = "canary-rolling"`, `strategy     = "big-bang" # want error "Big-bang"`},
		{`percent       = 2`, `percent       = 9 # want error "Invalid canary percent"`},
		{`approval      = "manual"`, `approval      = "auto" # want warning "Canary approved automatically"`},
		{"    percent = 100\n", "    percent = 95 # want error \"Last wave does not reach 100\"\n"},
		{`scope                            = "wave"`, `scope                            = "all" # want error "Unknown scope"`},
	}},
}

// want is one expected diagnostic, read from a marker comment.
type want struct {
	line     int
	severity hcl2.DiagnosticSeverity
	summary  string
}

var wantRe = regexp.MustCompile(`# want (error|warning) "((?:[^"\\]|\\.)*)"`)

func parseWants(t *testing.T, src string) []want {
	t.Helper()
	var out []want
	for i, line := range strings.Split(src, "\n") {
		for _, m := range wantRe.FindAllStringSubmatch(line, -1) {
			sev := hcl2.DiagError
			if m[1] == "warning" {
				sev = hcl2.DiagWarning
			}
			out = append(out, want{line: i + 1, severity: sev, summary: strings.ReplaceAll(m[2], `\"`, `"`)})
		}
	}
	return out
}

func applyEdits(t *testing.T, edits []edit) string {
	t.Helper()
	src := basePolicy
	for _, e := range edits {
		if n := strings.Count(src, e.old); n != 1 {
			t.Fatalf("edit %q matches %d times in the policy, want 1", e.old, n)
		}
		src = strings.Replace(src, e.old, e.new, 1)
	}
	return src
}

func severityName(s hcl2.DiagnosticSeverity) string {
	if s == hcl2.DiagWarning {
		return "warning"
	}
	return "error"
}

// TestRules checks every rule of the policy language: each case edits a
// valid policy and marks the lines where diagnostics must be reported, with
// their severity. Exactly the marked diagnostics must come out.
func TestRules(t *testing.T) {
	for _, tc := range ruleCases {
		t.Run(tc.name, func(t *testing.T) {
			src := applyEdits(t, tc.edits)
			wants := parseWants(t, src)
			policies, diags := ParseSource(caseFile, []byte(src))

			var unmatched []string
			used := make([]bool, len(wants))
		diagLoop:
			for _, d := range diags {
				if d.Subject == nil {
					unmatched = append(unmatched, fmt.Sprintf("%s without a range: %s: %s", severityName(d.Severity), d.Summary, d.Detail))
					continue
				}
				if d.Subject.Filename != caseFile {
					t.Errorf("diagnostic %q is in file %q, want %q", d.Summary, d.Subject.Filename, caseFile)
				}
				for i, w := range wants {
					if !used[i] && w.line == d.Subject.Start.Line && w.severity == d.Severity && strings.Contains(d.Summary, w.summary) {
						used[i] = true
						continue diagLoop
					}
				}
				unmatched = append(unmatched, fmt.Sprintf("line %d: %s: %s: %s", d.Subject.Start.Line, severityName(d.Severity), d.Summary, d.Detail))
			}
			for _, u := range unmatched {
				t.Errorf("unexpected diagnostic: %s", u)
			}
			for i, w := range wants {
				if !used[i] {
					t.Errorf("missing %s %q at line %d", severityName(w.severity), w.summary, w.line)
				}
			}
			for _, d := range diags {
				detail := strings.TrimSpace(d.Detail)
				if detail == "" || strings.HasSuffix(detail, ":") || strings.Contains(detail, ":  ") {
					t.Errorf("diagnostic %q has an empty or cut detail: %q", d.Summary, d.Detail)
				}
			}

			if diags.HasErrors() {
				if policies != nil {
					t.Errorf("got %d policies with errors, want none", len(policies))
				}
				return
			}
			if len(policies) == 0 {
				t.Fatal("no policy decoded from a valid file")
			}
			for _, p := range policies {
				if p == nil {
					t.Fatal("nil policy")
				}
				checkInvariants(t, p)
			}
		})
	}
}

// TestRulesCoverEveryDiagnostic makes sure the table has an invalid case for
// every kind of problem it claims to cover: each summary in the table is
// produced by at least one case (checked by TestRules), and the cases are
// sorted into valid and invalid ones sensibly.
func TestRulesCoverEveryDiagnostic(t *testing.T) {
	var valid, invalid int
	summaries := map[string]bool{}
	for _, tc := range ruleCases {
		src := applyEdits(t, tc.edits)
		ws := parseWants(t, src)
		if strings.HasPrefix(tc.name, "valid:") {
			valid++
			if len(ws) != 0 {
				t.Errorf("valid case %q expects diagnostics", tc.name)
			}
			continue
		}
		invalid++
		if len(ws) == 0 {
			t.Errorf("case %q expects no diagnostic; name it \"valid: ...\"", tc.name)
		}
		for _, w := range ws {
			summaries[w.summary] = true
		}
	}
	if valid < 10 || invalid < 60 {
		t.Errorf("%d valid and %d invalid cases; the table lost cases", valid, invalid)
	}
	keys := make([]string, 0, len(summaries))
	for k := range summaries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("%d valid cases, %d invalid cases, %d distinct diagnostics", valid, invalid, len(keys))
}
