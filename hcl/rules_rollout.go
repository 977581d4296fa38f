package hcl

import (
	"regexp"
	"slices"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/scheduler"
)

// maxMaxParallel bounds max_parallel (invariant I10); errMaxParallelTooHigh
// says why.
const maxMaxParallel = 1000

var rolloutNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)

func strategies() []string {
	out := make([]string, len(scheduler.Strategies))
	for i, s := range scheduler.Strategies {
		out[i] = string(s)
	}
	return out
}

// isBigBang says whether a strategy name asks to deploy everywhere at once.
func isBigBang(s string) bool {
	n := strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
	switch n {
	case "bigbang", "allatonce", "atonce", "all", "everywhere", "recreate", "immediate", "instant", "simultaneous", "direct", "nocanary":
		return true
	}
	return false
}

// rolloutName checks the rollout block's label, the application name.
func (d *decoder) rolloutName(r hcl2.Range, name string) {
	if !rolloutNameRe.MatchString(name) {
		d.add(errRolloutName(r, name))
	}
}

// rolloutSettings reads the rollout block's own attributes: strategy and
// max_parallel.
func (d *decoder) rolloutSettings(c *hcl2.BodyContent, p *scheduler.Policy) {
	if a := c.Attributes["strategy"]; a != nil {
		p.StrategyRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			switch {
			case slices.Contains(strategies(), s):
				p.Strategy = scheduler.Strategy(s)
			case isBigBang(s):
				d.add(errBigBangStrategy(a.Expr.Range(), s))
			default:
				d.add(errUnknownEnum(a.Expr.Range(), "strategy", s, strategies()))
			}
		}
	}
	if a := c.Attributes["max_parallel"]; a != nil {
		p.MaxParallelRange = a.Expr.Range()
		if n, ok := d.integer(a); ok {
			switch {
			case n < 1:
				d.add(errIntRange(a.Expr.Range(), "rollout", "max_parallel", n, 1))
			case n > maxMaxParallel:
				d.add(errMaxParallelTooHigh(a.Expr.Range(), n))
			default:
				p.MaxParallel = n
			}
		}
	}
}

func (d *decoder) fleet(b *hcl2.Block) scheduler.Fleet {
	c := d.content(b.Body, fleetSpec)
	f := scheduler.Fleet{Range: b.DefRange, SelectorRange: b.DefRange}
	if a := d.required(c, b, "selector"); a != nil {
		f.SelectorRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" {
				d.add(errEmptyString(a.Expr.Range(), "selector"))
			}
			f.Selector = s
		}
	}
	if a := c.Attributes["datacenters"]; a != nil {
		if dcs, ok := d.stringList(a); ok {
			for _, dc := range dcs {
				if strings.TrimSpace(dc) == "" {
					d.add(errEmptyListItem(a.Expr.Range(), "datacenters"))
					break
				}
			}
			f.Datacenters = dcs
		}
	}
	return f
}
