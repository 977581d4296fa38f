package hcl

import (
	"fmt"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// Diagnostics of the ab block (rules_ab.go).

func errABWithoutStrategy(subject hcl2.Range, strategy string) *hcl2.Diagnostic {
	return newError(subject, "ab block without strategy = \"a-b\"",
		fmt.Sprintf("The ab block configures the comparison of an a-b rollout, but this rollout's strategy is %q, which compares nothing. Set strategy = \"a-b\" (the last wave is then the share that runs the new version beside the old one), or remove the ab block.", strategy))
}

func warnShortABDuration(subject hcl2.Range, d time.Duration) *hcl2.Diagnostic {
	return newWarning(subject, "Short A/B comparison",
		fmt.Sprintf("duration = %q gives the devices little time to measure: with few requests and latency samples the comparison often says \"not enough data\", and it misses slow effects (warm-up, memory growth). Prefer 10m or more outside tests.", d))
}

func errConfidence(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	detail := fmt.Sprintf("confidence is %s, but it is a probability between %s and %s: a difference counts when its p-value is below 1 - confidence.", fmtNum(v), fmtNum(minConfidence), fmtNum(maxConfidence))
	if v > 1 && v <= 100 {
		detail += fmt.Sprintf(" For %s %% write confidence = %s.", fmtNum(v), fmtNum(v/100))
	} else {
		detail += " The usual value is 0.95."
	}
	return newError(subject, "Invalid confidence", detail)
}

func errToleranceRate(subject hcl2.Range, name string, v float64) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%s is %s, but it is a difference of rates, a fraction between 0 and 1 (0.01: B's rate may be one point above A's).", name, fmtNum(v))
	if v > 1 && v <= 100 {
		detail += fmt.Sprintf(" For %s points write %s = %s.", fmtNum(v), name, fmtNum(v/100))
	}
	return newError(subject, "Invalid tolerance "+name, detail)
}
