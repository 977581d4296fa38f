package hcl

import (
	"slices"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Rules of the ab block: an a-b rollout's comparison of group A (the
// active version) with group B (the release).
//
//	ab {
//	  duration   = "10m"          # group B runs this long before the comparison
//	  promote_if = "not-worse"    # never (default) | not-worse | better
//	  confidence = 0.95
//	  tolerance {
//	    error_rate          = 0.01  # B's error rate may be 1 point higher
//	    p95_latency_percent = 10    # B's p95 latency may be 10 % higher
//	  }
//	}

var promoteIfs = func() []string {
	out := make([]string, len(scheduler.PromoteIfs))
	for i, p := range scheduler.PromoteIfs {
		out[i] = string(p)
	}
	return out
}()

// Bounds of the ab block.
const (
	minConfidence = 0.5
	maxConfidence = 0.999
	minABSamples  = 3
)

// ab decodes the ab block of a rollout whose strategy is p.Strategy.
func (d *decoder) ab(b *hcl2.Block, p *scheduler.Policy) *scheduler.AB {
	c := d.content(b.Body, abSpec)
	if p.Strategy != scheduler.StrategyAB {
		d.add(errABWithoutStrategy(b.DefRange, string(p.Strategy)))
	}
	ab := &scheduler.AB{
		PromoteIf:   scheduler.PromoteNever,
		Confidence:  scheduler.DefaultABConfidence,
		MinRequests: scheduler.DefaultABMinRequests,
		MinSamples:  scheduler.DefaultABMinSamples,
		Range:       b.DefRange,
	}
	if a := c.Attributes["duration"]; a != nil {
		if v, ok := d.duration(a); ok {
			switch {
			case v <= 0:
				d.add(errDurationNotPositive(a.Expr.Range(), "ab", "duration", v))
			case v < shortSoak:
				ab.Duration = v
				d.add(warnShortABDuration(a.Expr.Range(), v))
			default:
				ab.Duration = v
			}
		}
	}
	if a := c.Attributes["promote_if"]; a != nil {
		if s, ok := d.str(a); ok {
			if !slices.Contains(promoteIfs, s) {
				d.add(errUnknownEnum(a.Expr.Range(), "promote_if", s, promoteIfs))
			} else {
				ab.PromoteIf = scheduler.PromoteIf(s)
			}
		}
	}
	if a := c.Attributes["confidence"]; a != nil {
		if v, ok := d.number(a); ok {
			if v < minConfidence || v > maxConfidence {
				d.add(errConfidence(a.Expr.Range(), v))
			} else {
				ab.Confidence = v
			}
		}
	}
	if a := c.Attributes["min_requests"]; a != nil {
		if n, ok := d.integer(a); ok {
			if n < 1 {
				d.add(errIntRange(a.Expr.Range(), "ab", "min_requests", n, 1))
			} else {
				ab.MinRequests = float64(n)
			}
		}
	}
	if a := c.Attributes["min_samples"]; a != nil {
		if n, ok := d.integer(a); ok {
			if n < minABSamples {
				d.add(errIntRange(a.Expr.Range(), "ab", "min_samples", n, minABSamples))
			} else {
				ab.MinSamples = n
			}
		}
	}
	blocks := blocksOf(c)
	if tb := single(blocks, "tolerance"); tb != nil {
		ab.Tolerance = d.abTolerance(tb)
	}
	return ab
}

func (d *decoder) abTolerance(b *hcl2.Block) scheduler.ABTolerance {
	c := d.content(b.Body, toleranceSpec)
	t := scheduler.ABTolerance{Range: b.DefRange}
	rate := func(name string) float64 {
		a := c.Attributes[name]
		if a == nil {
			return 0
		}
		v, ok := d.number(a)
		if !ok {
			return 0
		}
		if v < 0 || v > 1 {
			d.add(errToleranceRate(a.Expr.Range(), name, v))
			return 0
		}
		return v
	}
	t.ErrorRate = rate("error_rate")
	t.ProbeFailureRate = rate("probe_failure_rate")
	if a := c.Attributes["p95_latency_percent"]; a != nil {
		t.P95LatencyPercent = d.percent(a, "tolerance", 0, maxLatencyIncrease)
	}
	return t
}
