// Package hcl is fleetplan's rollout policy language: it reads policy files
// (HCL native syntax, conventionally named *.fleet.hcl), checks them against
// the field's rules and decodes them into scheduler.Policy values.
//
// Every problem is reported as an hcl.Diagnostic with the range of the
// offending attribute or block (a missing attribute or block is reported at
// the opening line of the block that should contain it), and decoding goes
// on after the first problem so that one run shows them all. The schema lives
// in schema.go; decode.go takes block bodies apart against it and values.go
// reads typed values at the expression; the rules of each block (ranges,
// enums, strategies, waves, thresholds, probes) are in rules_*.go; the
// diagnostic constructors live in diagnostics.go and, for refused input
// (file sizes, probes), diagnostics_input.go; files.go reads files with
// their size limits.
//
// A policy file holds one or more rollout blocks:
//
//	rollout "detector" {            # label: the application name
//	  fleet    { selector = "..." }  # required
//	  release  { jobspec = "..."  version = "..." }
//	  strategy     = "canary-rolling"
//	  max_parallel = 10
//	  canary   { percent = 2  soak = "15m" }
//	  wave     { percent = 100  soak = "10m" }    # one or more
//	  health   { application { } }
//	  rollback { max_failure_percent = 2 }
//	  offline  { catch_up = true }
//	}
//
// examples/detector.fleet.hcl documents every block and attribute.
//
// Input is refused before anything acts on it (invariant I10: bad input
// gets a clear error and changes nothing):
//
//   - functional.probe must be a probe built into the device agent
//     (plugin.ProbeNames: http-json, tcp, exec); any other name is reported
//     with the known ones and the closest. The attributes a probe takes
//     follow from its plugin schema (plugin.ProbeSchema, rules_functional.go):
//     an attribute the probe does not use is an error, and so is a missing
//     one it needs (expect for http-json, command for exec).
//   - exec's command is a name (plugin.ValidExecCommandName), never a
//     program or command line: the policy reaches the devices through
//     Consul KV, and each agent maps the name to a program of its own local
//     allow-list. args (optional, at most 64 strings) go to that program.
//   - max_parallel is 1 to 1000; a policy file and the jobspec it names are
//     read up to MaxPolicyFileSize and MaxJobspecSize (1 MiB each).
//
// An exec probe:
//
//	functional {
//	  probe   = "exec"
//	  command = "infer-selftest"      # an entry of the agents' allow-list
//	  args    = ["--model", "yolo"]
//	}
//
// rollback.max_offline_after_switch_percent (0 to 100, default
// max_failure_percent) is the budget of devices that drop offline after
// their switch (invariant I6: offline after a switch counts; offline before
// one is skipped); it is decoded into
// scheduler.Rollback.MaxOfflineAfterSwitchPercent, always set.
package hcl
