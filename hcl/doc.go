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
// enums, strategies, waves, thresholds) are in rules_*.go; the diagnostic
// constructors live in diagnostics.go.
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
package hcl
