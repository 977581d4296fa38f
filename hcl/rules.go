package hcl

import (
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// The field rules: each block's attributes are read with the typed readers of
// values.go and checked against their ranges and enums here and in
// rules_*.go, one file per group of blocks. A value that breaks a rule is
// reported and the default is kept, so that decoding goes on.

// positiveDuration reads a duration that must be above zero; def is kept
// when it is not.
func (d *decoder) positiveDuration(a *hcl2.Attribute, block string, def time.Duration) time.Duration {
	v, ok := d.duration(a)
	if !ok {
		return def
	}
	if v <= 0 {
		d.add(errDurationNotPositive(a.Expr.Range(), block, a.Name, v))
		return def
	}
	return v
}

// percent reads a threshold in lo..hi.
func (d *decoder) percent(a *hcl2.Attribute, block string, lo, hi float64) float64 {
	v, ok := d.number(a)
	if !ok {
		return 0
	}
	if v < lo || v > hi {
		d.add(errPercentRange(a.Expr.Range(), block, a.Name, v, lo, hi))
		return 0
	}
	return v
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}
