package hcl

import (
	"fmt"
	"math"
	"strings"

	"github.com/agext/levenshtein"
)

// Hints the diagnostics give: the name closest to a typo ("did you mean"),
// and the percentages a canary or waves were probably meant as.

// suggest returns the candidate closest to given, or "" when none is close
// enough to be a likely typo.
func suggest(given string, candidates []string) string {
	g := strings.ToLower(given)
	best, bestDist := "", math.MaxInt
	for _, c := range candidates {
		if d := levenshtein.Distance(g, strings.ToLower(c), nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	limit := 2
	if len(g) >= 8 {
		limit = 3
	}
	if best != "" && bestDist <= limit {
		return best
	}
	if len(g) >= 3 {
		for _, c := range candidates {
			lc := strings.ToLower(c)
			if strings.HasPrefix(lc, g) || strings.HasPrefix(g, lc) {
				return c
			}
		}
	}
	return ""
}

func suggestNextPercent(canary float64) float64 {
	if canary < 10 {
		return 10
	}
	return math.Min(100, math.Ceil(canary/10)*10+10)
}

// stepSizeHint recognises waves written as step sizes: when the canary and
// the waves add up to 100, or the waves alone do, it returns a sentence with
// the cumulative percentages they stand for; otherwise "".
func stepSizeHint(canary float64, waves []float64) string {
	sum := 0.0
	for _, w := range waves {
		sum += w
	}
	var start float64
	switch {
	case math.Abs(canary+sum-100) < 1e-9:
		start = canary
	case math.Abs(sum-100) < 1e-9:
		start = 0
	default:
		return ""
	}
	cum := make([]string, len(waves))
	acc, prev := start, canary
	for i, w := range waves {
		acc += w
		if i == len(waves)-1 {
			acc = 100
		}
		if acc <= prev {
			return ""
		}
		prev = acc
		cum[i] = fmtNum(math.Round(acc*1000) / 1000)
	}
	return fmt.Sprintf(" These percentages add up to 100 like step sizes; as cumulative shares they are %s.", strings.Join(cum, ", "))
}
