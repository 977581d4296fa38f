package hcl

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// abEdits makes the base policy an a-b rollout (last wave 50) with the ab
// block written after the waves.
func abEdits(block string) []edit {
	return []edit{
		{`strategy     = "canary-rolling"`, `strategy     = "a-b"`},
		{wave2Block, "  wave {\n    percent = 50\n    soak    = \"10m\"\n  }\n\n" + block},
	}
}

const abBlock = `  ab {
    duration   = "20m"
    promote_if = "not-worse"
    confidence = 0.99
    tolerance {
      error_rate          = 0.01
      p95_latency_percent = 10
    }
  }
`

var abCases = []struct {
	name  string
	edits []edit
}{
	{"valid: ab block", abEdits(abBlock)},
	{"valid: empty ab block", abEdits("  ab {}\n")},
	{"ab without a-b", []edit{{wave2Block, wave2Block + "  ab { # want error \"ab block without strategy\"\n    promote_if = \"never\"\n  }\n"}}},
	{"unknown promote_if", abEdits(strings.Replace(abBlock, `promote_if = "not-worse"`, `promote_if = "not_worse" # want error "Unknown promote_if"`, 1))},
	{"confidence in percent", abEdits(strings.Replace(abBlock, `confidence = 0.99`, `confidence = 95 # want error "Invalid confidence"`, 1))},
	{"zero duration", abEdits(strings.Replace(abBlock, `duration   = "20m"`, `duration   = "0s" # want error "Invalid duration"`, 1))},
	{"short duration warns", abEdits(strings.Replace(abBlock, `duration   = "20m"`, `duration   = "30s" # want warning "Short A/B comparison"`, 1))},
	{"error_rate tolerance in points", abEdits(strings.Replace(abBlock, `error_rate          = 0.01`, `error_rate          = 2 # want error "Invalid tolerance error_rate"`, 1))},
	{"latency tolerance negative", abEdits(strings.Replace(abBlock, `p95_latency_percent = 10`, `p95_latency_percent = -5 # want error "Invalid p95_latency_percent"`, 1))},
	{"unknown tolerance attribute", abEdits(strings.Replace(abBlock, `p95_latency_percent = 10`, `p95_latency = 10 # want error "Unsupported argument"`, 1))},
	{"min_samples too small", abEdits(strings.Replace(abBlock, `confidence = 0.99`, "confidence = 0.99\n    min_samples = 1 # want error \"Invalid min_samples\"", 1))},
	{"two ab blocks", abEdits(abBlock + "  ab { # want error \"Duplicate ab block\"\n  }\n")},
}

// TestABRules checks the ab block's rules as TestRules does the others':
// exactly the marked diagnostics, at their lines.
func TestABRules(t *testing.T) {
	for _, tc := range abCases {
		t.Run(tc.name, func(t *testing.T) {
			src := applyEdits(t, tc.edits)
			wants := parseWants(t, src)
			if strings.HasPrefix(tc.name, "valid:") != (len(wants) == 0) {
				t.Fatalf("case %q: valid cases expect nothing, the others something", tc.name)
			}
			policies, diags := ParseSource(caseFile, []byte(src))
			used := make([]bool, len(wants))
		next:
			for _, d := range diags {
				if d.Subject == nil {
					t.Errorf("diagnostic without a range: %s", d.Summary)
					continue
				}
				for i, w := range wants {
					if !used[i] && w.line == d.Subject.Start.Line && w.severity == d.Severity && strings.Contains(d.Summary, w.summary) {
						used[i] = true
						if strings.TrimSpace(d.Detail) == "" {
							t.Errorf("%q has no detail", d.Summary)
						}
						continue next
					}
				}
				t.Errorf("unexpected diagnostic at line %d: %s: %s", d.Subject.Start.Line, d.Summary, d.Detail)
			}
			for i, w := range wants {
				if !used[i] {
					t.Errorf("missing %s %q at line %d", severityName(w.severity), w.summary, w.line)
				}
			}
			if !diags.HasErrors() && len(policies) == 0 {
				t.Fatal("no policy decoded from a valid file")
			}
		})
	}
}

func TestABDecoded(t *testing.T) {
	policies, diags := ParseSource(caseFile, []byte(applyEdits(t, abEdits(abBlock))))
	if diags.HasErrors() || len(policies) != 1 {
		t.Fatalf("diags %v", diags)
	}
	ab := policies[0].AB
	if ab == nil {
		t.Fatal("no ab config decoded")
	}
	want := scheduler.AB{Duration: 20 * time.Minute, PromoteIf: scheduler.PromoteNotWorse, Confidence: 0.99,
		MinRequests: scheduler.DefaultABMinRequests, MinSamples: scheduler.DefaultABMinSamples,
		Tolerance: scheduler.ABTolerance{ErrorRate: 0.01, P95LatencyPercent: 10}}
	got := *ab
	got.Range, got.Tolerance.Range = want.Range, want.Tolerance.Range
	if got != want {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
	// The hold: the last B wave soaks for the duration, then group A.
	st := policies[0].Stages()
	if n := len(st); n != 4 || st[2].Soak != 20*time.Minute || st[3].Name != scheduler.ABGroupAStage || st[3].Percent != 100 {
		t.Errorf("stages %+v, want canary, wave 1, wave 2 soaking 20m, group A at 100", st)
	}

	// An empty block: report only, defaults.
	policies, _ = ParseSource(caseFile, []byte(applyEdits(t, abEdits("  ab {}\n"))))
	if ab := policies[0].AB; ab == nil || ab.PromoteIf != scheduler.PromoteNever || ab.Confidence != 0.95 {
		t.Errorf("empty ab block decoded %+v, want never at 0.95", ab)
	}
}

// The error names the file, line and column of the value.
func TestABDiagnosticPosition(t *testing.T) {
	src := applyEdits(t, abEdits(strings.Replace(abBlock, `promote_if = "not-worse"`, `promote_if = "sometimes"`, 1)))
	_, diags := ParseSource(caseFile, []byte(src))
	if len(diags) != 1 {
		t.Fatalf("diags %v", diags)
	}
	d := diags[0]
	line := 0
	for i, l := range strings.Split(src, "\n") {
		if strings.Contains(l, `"sometimes"`) {
			line = i + 1
		}
	}
	if d.Subject.Filename != caseFile || d.Subject.Start.Line != line || d.Subject.Start.Column != 18 {
		t.Errorf("reported at %s:%d:%d, want %s:%d:18", d.Subject.Filename, d.Subject.Start.Line, d.Subject.Start.Column, caseFile, line)
	}
	if !strings.Contains(d.Detail, `"not-worse"`) || !strings.Contains(d.Detail, `"never"`) {
		t.Errorf("detail %q does not list the accepted values", d.Detail)
	}
}
