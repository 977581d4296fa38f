package hcl

import (
	"slices"
	"strconv"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Rules of the stages: the canary and the waves.

// shortSoak is the soak under which a warning is given.
const shortSoak = time.Minute

var approvals = []string{string(scheduler.ApprovalManual), string(scheduler.ApprovalAuto)}

// soak reads a stage's soak: it must be positive, and a short one is worth
// a warning.
func (d *decoder) soak(a *hcl2.Attribute, stage string) (time.Duration, bool) {
	dur, ok := d.duration(a)
	if !ok {
		return 0, false
	}
	switch {
	case dur <= 0:
		d.add(errSoakNotPositive(a.Expr.Range(), stage, dur))
		return 0, false
	case dur < shortSoak:
		d.add(warnShortSoak(a.Expr.Range(), stage, dur))
	}
	return dur, true
}

// canary decodes the canary block; the second result says whether its
// percent is valid, so that the waves can be compared with it. A
// rolling-update has no approval step unless the policy writes
// approval = "manual".
func (d *decoder) canary(b *hcl2.Block, strategy scheduler.Strategy) (scheduler.Canary, bool) {
	c := d.content(b.Body, canarySpec)
	approval := scheduler.ApprovalManual
	if strategy == scheduler.StrategyRollingUpdate {
		approval = scheduler.ApprovalAuto
	}
	cn := scheduler.Canary{
		MinPerClass:  scheduler.DefaultMinPerClass,
		Approval:     approval,
		Range:        b.DefRange,
		PercentRange: b.DefRange,
		SoakRange:    b.DefRange,
	}
	percentOK := false
	if a := d.required(c, b, "percent"); a != nil {
		cn.PercentRange = a.Expr.Range()
		if v, ok := d.number(a); ok {
			switch {
			case v >= 100:
				d.add(errBigBangCanary(a.Expr.Range(), v))
			case v < 1 || v > 5:
				d.add(errCanaryPercent(a.Expr.Range(), v))
			default:
				percentOK = true
			}
			cn.Percent = v
		}
	}
	if a := c.Attributes["min_per_class"]; a != nil {
		if n, ok := d.integer(a); ok {
			if n < 1 {
				d.add(errIntRange(a.Expr.Range(), "canary", "min_per_class", n, 1))
			} else {
				cn.MinPerClass = n
			}
		}
	}
	if a := d.required(c, b, "soak"); a != nil {
		cn.SoakRange = a.Expr.Range()
		cn.Soak, _ = d.soak(a, "the canary")
	}
	if a := c.Attributes["approval"]; a != nil {
		if s, ok := d.str(a); ok {
			switch {
			case !slices.Contains(approvals, s):
				d.add(errUnknownEnum(a.Expr.Range(), "approval", s, approvals))
			case s == string(scheduler.ApprovalAuto):
				if strategy != scheduler.StrategyRollingUpdate {
					d.add(warnAutoApproval(a.Expr.Range()))
				}
				cn.Approval = scheduler.ApprovalAuto
			default:
				cn.Approval = scheduler.ApprovalManual
			}
		}
	}
	return cn, percentOK
}

// waves decodes the wave blocks and checks that their cumulative
// percentages grow from the canary's and end at 100 (below 100 for a-b).
func (d *decoder) waves(rollout *hcl2.Block, blocks []*hcl2.Block, p *scheduler.Policy, canaryOK bool) []scheduler.Wave {
	if len(blocks) == 0 {
		d.add(errNoWaves(rollout.DefRange, p.Name))
		return nil
	}
	waves := make([]scheduler.Wave, 0, len(blocks))
	valid := make([]bool, 0, len(blocks))
	for i, b := range blocks {
		c := d.content(b.Body, waveSpec)
		w := scheduler.Wave{Range: b.DefRange, PercentRange: b.DefRange, SoakRange: b.DefRange}
		ok := false
		if a := d.required(c, b, "percent"); a != nil {
			w.PercentRange = a.Expr.Range()
			if v, vok := d.number(a); vok {
				w.Percent = v
				if v <= 0 || v > 100 {
					d.add(errPercentRange(a.Expr.Range(), "wave", "percent", v, 0, 100))
				} else {
					ok = true
				}
			}
		}
		if a := d.required(c, b, "soak"); a != nil {
			w.SoakRange = a.Expr.Range()
			w.Soak, _ = d.soak(a, "wave "+strconv.Itoa(i+1))
		}
		waves = append(waves, w)
		valid = append(valid, ok)
	}

	// Cumulative order: every wave above everything before it. The first
	// problem found carries the step-size hint, when there is one.
	hint := ""
	if canaryOK && !slices.Contains(valid, false) {
		percents := make([]float64, len(waves))
		for i, w := range waves {
			percents[i] = w.Percent
		}
		hint = stepSizeHint(p.Canary.Percent, percents)
	}
	takeHint := func() string {
		h := hint
		hint = ""
		return h
	}
	prev, prevWave := 0.0, 0 // prevWave 0 is the canary
	var prevRange hcl2.Range
	havePrev := false
	if canaryOK {
		prev, havePrev, prevRange = p.Canary.Percent, true, p.Canary.PercentRange
	}
	for i, w := range waves {
		if !valid[i] {
			continue
		}
		if havePrev && w.Percent <= prev {
			if prevWave == 0 {
				d.add(errWaveNotAboveCanary(w.PercentRange, i+1, w.Percent, prev, takeHint()))
			} else {
				d.add(errWaveNotIncreasing(w.PercentRange, i+1, w.Percent, prevWave, prev, prevRange, takeHint()))
			}
			continue
		}
		prev, prevWave, prevRange, havePrev = w.Percent, i+1, w.PercentRange, true
	}

	last := len(waves) - 1
	if valid[last] {
		switch w := waves[last]; {
		case p.Strategy == scheduler.StrategyAB && w.Percent == 100:
			d.add(errABLastWave100(w.PercentRange))
		case p.Strategy != scheduler.StrategyAB && w.Percent != 100:
			d.add(errLastWaveNot100(w.PercentRange, w.Percent, takeHint()))
		}
	}
	return waves
}
