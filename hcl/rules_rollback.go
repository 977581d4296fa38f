package hcl

import (
	"slices"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Rules of the rollback and offline blocks.

// maxLatencyIncrease bounds max_p95_latency_increase_percent (a hundredfold
// slowdown).
const maxLatencyIncrease = 10000

var scopes = []string{string(scheduler.ScopeWave), string(scheduler.ScopeFleet)}

func (d *decoder) rollback(b *hcl2.Block) scheduler.Rollback {
	c := d.content(b.Body, rollbackSpec)
	r := scheduler.Rollback{Scope: scheduler.ScopeWave, Range: b.DefRange}
	if a := d.required(c, b, "max_failure_percent"); a != nil {
		r.MaxFailurePercent = d.percent(a, "rollback", 0, 100)
	}
	if a := c.Attributes["max_error_rate"]; a != nil {
		if v, ok := d.number(a); ok {
			if v < 0 || v > 1 {
				d.add(errErrorRate(a.Expr.Range(), v))
			} else {
				r.MaxErrorRate = v
			}
		}
	}
	if a := c.Attributes["max_p95_latency_increase_percent"]; a != nil {
		r.MaxP95LatencyIncreasePercent = d.percent(a, "rollback", 0, maxLatencyIncrease)
	}
	// Invariant I6: devices that drop offline after their switch count
	// against their own budget, by default the failure budget.
	r.MaxOfflineAfterSwitchPercent = r.MaxFailurePercent
	if a := c.Attributes["max_offline_after_switch_percent"]; a != nil {
		r.MaxOfflineAfterSwitchPercent = d.percent(a, "rollback", 0, 100)
	}
	if a := c.Attributes["scope"]; a != nil {
		if s, ok := d.str(a); ok {
			if !slices.Contains(scopes, s) {
				d.add(errUnknownEnum(a.Expr.Range(), "scope", s, scopes))
			} else {
				r.Scope = scheduler.RollbackScope(s)
			}
		}
	}
	return r
}

func (d *decoder) offline(b *hcl2.Block) scheduler.Offline {
	c := d.content(b.Body, offlineSpec)
	o := scheduler.Offline{CatchUp: true, Range: b.DefRange}
	if a := c.Attributes["catch_up"]; a != nil {
		if v, ok := d.boolean(a); ok {
			o.CatchUp = v
			if !v {
				d.add(warnCatchUpOff(a.Expr.Range()))
			}
		}
	}
	if a := c.Attributes["max_offline_percent"]; a != nil {
		o.MaxOfflinePercent = d.percent(a, "offline", 0, 100)
	}
	return o
}
