package hcl

import (
	"strings"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// TestRollingUpdateApproval: a rolling-update has no approval step unless
// the policy writes approval = "manual"; the other strategies keep the
// manual default, and "auto" written on a rolling-update draws no warning.
func TestRollingUpdateApproval(t *testing.T) {
	cases := []struct {
		name     string
		strategy string
		approval string // the canary's approval line ("" removes it)
		want     scheduler.Approval
		warn     bool
	}{
		{"rolling-update default", "rolling-update", "", scheduler.ApprovalAuto, false},
		{"rolling-update manual", "rolling-update", `approval = "manual"`, scheduler.ApprovalManual, false},
		{"rolling-update auto", "rolling-update", `approval = "auto"`, scheduler.ApprovalAuto, false},
		{"canary-rolling default", "canary-rolling", "", scheduler.ApprovalManual, false},
		{"blue-green auto", "blue-green", `approval = "auto"`, scheduler.ApprovalAuto, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(basePolicy, `strategy     = "canary-rolling"`, `strategy     = "`+tc.strategy+`"`, 1)
			src = strings.Replace(src, `approval      = "manual"`, tc.approval, 1)
			policies, diags := ParseSource(caseFile, []byte(src))
			if diags.HasErrors() || len(policies) != 1 {
				t.Fatalf("parse: %v", diags)
			}
			if got := policies[0].Canary.Approval; got != tc.want {
				t.Errorf("approval %q, want %q", got, tc.want)
			}
			warned := false
			for _, d := range diags {
				if strings.Contains(d.Summary, "approved automatically") {
					warned = true
				}
			}
			if warned != tc.warn {
				t.Errorf("auto-approval warning %v, want %v", warned, tc.warn)
			}
		})
	}
}
