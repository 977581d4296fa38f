package hcl

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Defaults the scheduler package has no constant for.
const (
	defaultHealthPath         = "/health"
	defaultHealthPort         = "http"
	defaultHealthInterval     = 5 * time.Second
	defaultHealthTimeout      = 2 * time.Second
	defaultHeartbeatTimeout   = 30 * time.Second
	defaultFunctionalInterval = 30 * time.Second

	// shortSoak is the soak under which a warning is given.
	shortSoak = time.Minute
	// maxInputFileSize bounds a functional probe's input_file.
	maxInputFileSize = 1 << 20
	// maxJobspecSize bounds the jobspec read for the port check.
	maxJobspecSize = 4 << 20
	// maxLatencyIncrease bounds max_p95_latency_increase_percent (a
	// hundredfold slowdown).
	maxLatencyIncrease = 10000
	// httpJSONProbe is the built-in probe whose input must be JSON.
	httpJSONProbe = "http-json"
)

var (
	approvals = []string{string(scheduler.ApprovalManual), string(scheduler.ApprovalAuto)}
	scopes    = []string{string(scheduler.ScopeWave), string(scheduler.ScopeFleet)}

	rolloutNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	envNameRe     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

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

// decoder decodes the rollout blocks of one file, collecting diagnostics.
type decoder struct {
	// dir is the absolute folder of the policy file; relative paths in the
	// policy are resolved against it.
	dir   string
	src   []byte
	diags hcl2.Diagnostics

	// jobPorts are the port labels of the current rollout's jobspec, when
	// it could be read and parsed (jobPortsOK).
	jobPorts   []string
	jobPortsOK bool
}

func (d *decoder) add(diags ...*hcl2.Diagnostic) { d.diags = append(d.diags, diags...) }

// text returns the source text of a range, or "" when it is not in the
// file.
func (d *decoder) text(r hcl2.Range) string {
	if r.Start.Byte < 0 || r.End.Byte > len(d.src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return string(d.src[r.Start.Byte:r.End.Byte])
}

// content extracts a block body against its spec: it reports every
// attribute and block the spec does not know, every block with the wrong
// labels and every second block of a type allowed once, in source order,
// and returns the rest. A block missing a label is left out (and so is a
// duplicate); extra labels are dropped.
func (d *decoder) content(body hcl2.Body, spec *blockSpec) *hcl2.BodyContent {
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		c, diags := body.Content(spec.bodySchema())
		d.add(diags...)
		return c
	}
	c := &hcl2.BodyContent{Attributes: hcl2.Attributes{}, MissingItemRange: sb.MissingItemRange()}

	var unknown []*hclsyntax.Attribute
	var candidates []string
	for name, a := range sb.Attributes {
		if spec.hasAttr(name) {
			c.Attributes[name] = a.AsHCLAttribute()
		} else {
			unknown = append(unknown, a)
		}
	}
	for _, name := range spec.Attrs {
		if _, set := sb.Attributes[name]; !set {
			candidates = append(candidates, name)
		}
	}
	sort.Slice(unknown, func(i, j int) bool { return unknown[i].SrcRange.Start.Byte < unknown[j].SrcRange.Start.Byte })
	for _, a := range unknown {
		d.add(errUnknownAttribute(a.NameRange, a.Name, spec, candidates))
	}
	first := map[string]hcl2.Range{}
	for _, b := range sb.Blocks {
		child := spec.block(b.Type)
		if child != nil && !child.Multi {
			if r, dup := first[b.Type]; dup {
				d.add(errDuplicateBlock(b.DefRange(), b.Type, spec.Type, r))
				continue
			}
			first[b.Type] = b.DefRange()
		}
		switch {
		case child == nil:
			d.add(errUnknownBlock(b.TypeRange, b.Type, spec))
		case len(b.Labels) < len(child.Labels):
			d.add(errMissingLabel(b.TypeRange, child.Type, child.Labels[len(b.Labels)]))
		case len(b.Labels) > len(child.Labels):
			// Decode it anyway, so that the label is the only complaint.
			d.add(errExtraLabel(b.LabelRanges[len(child.Labels)], child.Type, child.Labels))
			hb := b.AsHCLBlock()
			hb.Labels, hb.LabelRanges = hb.Labels[:len(child.Labels)], hb.LabelRanges[:len(child.Labels)]
			c.Blocks = append(c.Blocks, hb)
		default:
			c.Blocks = append(c.Blocks, b.AsHCLBlock())
		}
	}
	return c
}

// blocksOf groups blocks by type, keeping source order.
func blocksOf(c *hcl2.BodyContent) map[string][]*hcl2.Block {
	out := map[string][]*hcl2.Block{}
	for _, b := range c.Blocks {
		out[b.Type] = append(out[b.Type], b)
	}
	return out
}

// single returns the block of a type that may appear once (content has
// reported any duplicate), or nil.
func single(blocks map[string][]*hcl2.Block, typ string) *hcl2.Block {
	if bs := blocks[typ]; len(bs) > 0 {
		return bs[0]
	}
	return nil
}

// required returns a required attribute, reporting it at the block's
// opening line when it is missing.
func (d *decoder) required(c *hcl2.BodyContent, b *hcl2.Block, name string) *hcl2.Attribute {
	a := c.Attributes[name]
	if a == nil {
		d.add(errMissingAttribute(b.DefRange, b.Type, name))
	}
	return a
}

// rollout decodes one rollout block.
func (d *decoder) rollout(b *hcl2.Block) *scheduler.Policy {
	name := b.Labels[0]
	d.jobPorts, d.jobPortsOK = nil, false
	p := &scheduler.Policy{
		Name:             name,
		File:             b.DefRange.Filename,
		DefRange:         b.DefRange,
		Strategy:         scheduler.StrategyCanaryRolling,
		MaxParallel:      scheduler.DefaultMaxParallel,
		StrategyRange:    b.DefRange,
		MaxParallelRange: b.DefRange,
	}
	if !rolloutNameRe.MatchString(name) {
		d.add(errRolloutName(b.LabelRanges[0], name))
	}
	c := d.content(b.Body, rolloutSpec)

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
			if n < 1 {
				d.add(errIntRange(a.Expr.Range(), "rollout", "max_parallel", n, 1))
			} else {
				p.MaxParallel = n
			}
		}
	}

	blocks := blocksOf(c)
	missing := func(typ string) { d.add(errMissingBlock(b.DefRange, "rollout", typ)) }

	if fb := single(blocks, "fleet"); fb != nil {
		p.Fleet = d.fleet(fb)
	} else {
		missing("fleet")
	}

	if rb := single(blocks, "release"); rb != nil {
		p.Release = d.release(rb)
	} else {
		missing("release")
	}

	canaryOK := false
	if cb := single(blocks, "canary"); cb != nil {
		p.Canary, canaryOK = d.canary(cb)
	} else {
		missing("canary")
	}

	p.Waves = d.waves(b, blocks["wave"], p, canaryOK)

	if hb := single(blocks, "health"); hb != nil {
		p.Health = d.health(hb, p)
	} else {
		missing("health")
	}

	if rb := single(blocks, "rollback"); rb != nil {
		p.Rollback = d.rollback(rb)
	} else {
		missing("rollback")
	}

	p.Offline = scheduler.Offline{CatchUp: true, Range: b.DefRange}
	if ob := single(blocks, "offline"); ob != nil {
		p.Offline = d.offline(ob)
	}
	return p
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

func (d *decoder) release(b *hcl2.Block) scheduler.Release {
	c := d.content(b.Body, releaseSpec)
	r := scheduler.Release{Range: b.DefRange, JobspecRange: b.DefRange, VersionRange: b.DefRange}
	if a := d.required(c, b, "jobspec"); a != nil {
		r.JobspecRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" {
				d.add(errEmptyString(a.Expr.Range(), "jobspec"))
			} else {
				r.Jobspec = d.resolve(s)
				switch info, err := os.Stat(r.Jobspec); {
				case errors.Is(err, fs.ErrNotExist):
					d.add(errJobspecNotFound(a.Expr.Range(), s, r.Jobspec))
				case err != nil:
					d.add(errJobspecUnreadable(a.Expr.Range(), s, r.Jobspec, err))
				case !info.Mode().IsRegular():
					d.add(errJobspecNotFile(a.Expr.Range(), s, r.Jobspec, info))
				default:
					d.inspectJobspec(a, r.Jobspec)
				}
			}
		}
	}
	if a := d.required(c, b, "version"); a != nil {
		r.VersionRange = a.Expr.Range()
		if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.Number {
			// 2.40 would become "2.4": versions are strings.
			d.add(errVersionNumber(a.Expr.Range(), d.text(a.Expr.Range())))
		} else if s, ok := d.str(a); ok {
			switch {
			case strings.TrimSpace(s) == "":
				d.add(errEmptyString(a.Expr.Range(), "version"))
			case strings.ContainsFunc(s, isSpace):
				d.add(errVersionSpaces(a.Expr.Range(), s))
			}
			r.Version = s
		}
	}
	if a := c.Attributes["env"]; a != nil {
		r.Env = d.env(a)
	}

	var first = map[string]hcl2.Range{}
	for _, vb := range c.Blocks {
		if vb.Type != "variant" {
			continue
		}
		class := vb.Labels[0]
		if strings.TrimSpace(class) == "" {
			d.add(errEmptyVariantClass(vb.LabelRanges[0]))
			continue
		}
		if prev, dup := first[class]; dup {
			d.add(errDuplicateVariant(vb.LabelRanges[0], class, prev))
			continue
		}
		first[class] = vb.DefRange
		v := scheduler.Variant{Class: class, Range: vb.DefRange}
		vc := d.content(vb.Body, variantSpec)
		if a := vc.Attributes["env"]; a != nil {
			v.Env = d.env(a)
		}
		if r.Variants == nil {
			r.Variants = map[string]scheduler.Variant{}
		}
		r.Variants[class] = v
	}
	return r
}

func (d *decoder) env(a *hcl2.Attribute) map[string]string {
	m, ok := d.stringMap(a)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !envNameRe.MatchString(k) {
			d.add(errEnvName(keyRange(a.Expr, k), k))
		}
	}
	return m
}

// resolve makes a path from the policy absolute, relative to the policy
// file's folder.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

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
// percent is valid, so that the waves can be compared with it.
func (d *decoder) canary(b *hcl2.Block) (scheduler.Canary, bool) {
	c := d.content(b.Body, canarySpec)
	cn := scheduler.Canary{
		MinPerClass:  scheduler.DefaultMinPerClass,
		Approval:     scheduler.ApprovalManual,
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
				d.add(warnAutoApproval(a.Expr.Range()))
				cn.Approval = scheduler.ApprovalAuto
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

func (d *decoder) health(b *hcl2.Block, p *scheduler.Policy) scheduler.Health {
	c := d.content(b.Body, healthSpec)
	h := scheduler.Health{
		Grace:        scheduler.DefaultGrace,
		Connectivity: scheduler.Connectivity{HeartbeatTimeout: defaultHeartbeatTimeout},
		Range:        b.DefRange,
	}
	if a := c.Attributes["grace"]; a != nil {
		if g, ok := d.duration(a); ok {
			if g < 0 {
				d.add(errDurationNegative(a.Expr.Range(), "grace", g))
			} else {
				h.Grace = g
			}
		}
	}
	blocks := blocksOf(c)
	if cb := single(blocks, "connectivity"); cb != nil {
		cc := d.content(cb.Body, connectivitySpec)
		if a := cc.Attributes["heartbeat_timeout"]; a != nil {
			h.Connectivity.HeartbeatTimeout = d.positiveDuration(a, "connectivity", defaultHeartbeatTimeout)
		}
	}
	if sb := single(blocks, "system"); sb != nil {
		h.System = d.system(sb)
	}
	if ab := single(blocks, "application"); ab != nil {
		h.Application = d.application(ab, p)
	} else {
		d.add(errMissingBlock(b.DefRange, "health", "application"))
	}
	if fb := single(blocks, "functional"); fb != nil {
		h.Functional = d.functional(fb)
	}
	return h
}

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

func (d *decoder) system(b *hcl2.Block) *scheduler.SystemHealth {
	c := d.content(b.Body, systemSpec)
	s := &scheduler.SystemHealth{Range: b.DefRange}
	if a := c.Attributes["max_cpu_percent"]; a != nil {
		s.MaxCPUPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_memory_percent"]; a != nil {
		s.MaxMemoryPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_disk_percent"]; a != nil {
		s.MaxDiskPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_temperature_c"]; a != nil {
		if v, ok := d.number(a); ok {
			switch {
			case v < 0 || v > 150:
				d.add(errTemperature(a.Expr.Range(), v))
			case v > 0 && v < 40:
				d.add(warnLowTemperature(a.Expr.Range(), v))
				s.MaxTemperatureC = v
			default:
				s.MaxTemperatureC = v
			}
		}
	}
	return s
}

func (d *decoder) application(b *hcl2.Block, p *scheduler.Policy) scheduler.Application {
	c := d.content(b.Body, applicationSpec)
	app := scheduler.Application{
		Port:          defaultHealthPort,
		Path:          defaultHealthPath,
		Interval:      defaultHealthInterval,
		Timeout:       defaultHealthTimeout,
		ExpectVersion: true,
		MaxRestarts:   scheduler.DefaultMaxRestarts,
		Range:         b.DefRange,
	}
	portRange := b.DefRange
	portOK := true
	if a := c.Attributes["port"]; a != nil {
		portRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" || strings.ContainsFunc(s, isSpace) {
				d.add(errPortLabel(a.Expr.Range(), s))
				portOK = false
			} else {
				app.Port = s
			}
		} else {
			portOK = false
		}
	}
	if a := c.Attributes["path"]; a != nil {
		if s, ok := d.str(a); ok {
			if !strings.HasPrefix(s, "/") {
				d.add(errHealthPath(a.Expr.Range(), "path", s))
			} else {
				app.Path = s
			}
		}
	}
	var intervalA, timeoutA *hcl2.Attribute
	if a := c.Attributes["interval"]; a != nil {
		intervalA = a
		app.Interval = d.positiveDuration(a, "application", defaultHealthInterval)
	}
	if a := c.Attributes["timeout"]; a != nil {
		timeoutA = a
		app.Timeout = d.positiveDuration(a, "application", defaultHealthTimeout)
	}
	for _, a := range []*hcl2.Attribute{intervalA, timeoutA} {
		v := app.Interval
		if a == timeoutA {
			v = app.Timeout
		}
		if a != nil && v > 0 && v < time.Second {
			d.add(errCheckBelowOneSecond(a.Expr.Range(), a.Name, v))
		}
	}
	if (intervalA != nil || timeoutA != nil) && app.Timeout >= app.Interval {
		r := b.DefRange
		if timeoutA != nil {
			r = timeoutA.Expr.Range()
		} else if intervalA != nil {
			r = intervalA.Expr.Range()
		}
		d.add(warnTimeoutNotBelowInterval(r, app.Timeout, app.Interval))
	}
	if a := c.Attributes["expect_version"]; a != nil {
		if v, ok := d.boolean(a); ok {
			app.ExpectVersion = v
			if !v {
				d.add(warnExpectVersionOff(a.Expr.Range()))
			}
		}
	}
	if a := c.Attributes["max_restarts"]; a != nil {
		if n, ok := d.integer(a); ok {
			if n < 0 {
				d.add(errIntRange(a.Expr.Range(), "application", "max_restarts", n, 0))
			} else {
				app.MaxRestarts = n
			}
		}
	}
	if portOK && d.jobPortsOK && !slices.Contains(d.jobPorts, app.Port) {
		d.add(warnPortNotInJobspec(portRange, app.Port, filepath.Base(p.Release.Jobspec), d.jobPorts))
	}
	return app
}

func (d *decoder) functional(b *hcl2.Block) *scheduler.Functional {
	c := d.content(b.Body, functionalSpec)
	f := &scheduler.Functional{Interval: defaultFunctionalInterval, Range: b.DefRange}
	if a := d.required(c, b, "probe"); a != nil {
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" {
				d.add(errEmptyString(a.Expr.Range(), "probe"))
			}
			f.Probe = s
		}
	}
	if a := c.Attributes["path"]; a != nil {
		if s, ok := d.str(a); ok {
			if !strings.HasPrefix(s, "/") {
				d.add(errHealthPath(a.Expr.Range(), "path", s))
			} else {
				f.Path = s
			}
		}
	}
	inputA, fileA := c.Attributes["input"], c.Attributes["input_file"]
	var input hcl2.Range
	switch {
	case inputA != nil && fileA != nil:
		d.add(errFunctionalInputBoth(fileA.NameRange))
	case inputA != nil:
		input = inputA.Expr.Range()
		if s, ok := d.str(inputA); ok {
			f.Input = s
		} else {
			inputA = nil
		}
	case fileA != nil:
		input = fileA.Expr.Range()
		fileA = d.inputFile(fileA, f)
	}
	if (inputA != nil || fileA != nil) && f.Probe == httpJSONProbe && f.Input != "" {
		var v any
		if err := json.Unmarshal([]byte(f.Input), &v); err != nil {
			d.add(errInputNotJSON(input, f.Probe, err))
		}
	}
	if a := d.required(c, b, "expect"); a != nil {
		if m, ok := d.stringMap(a); ok {
			if len(m) == 0 {
				d.add(errEmptyExpect(a.Expr.Range()))
			}
			f.Expect = m
		}
	}
	if a := c.Attributes["max_latency"]; a != nil {
		f.MaxLatency = d.positiveDuration(a, "functional", 0)
	}
	if a := c.Attributes["interval"]; a != nil {
		f.Interval = d.positiveDuration(a, "functional", defaultFunctionalInterval)
	}
	return f
}

// inputFile reads a functional probe's input_file into f; it returns nil
// when the file cannot be used.
func (d *decoder) inputFile(a *hcl2.Attribute, f *scheduler.Functional) *hcl2.Attribute {
	s, ok := d.str(a)
	if !ok {
		return nil
	}
	if strings.TrimSpace(s) == "" {
		d.add(errEmptyString(a.Expr.Range(), "input_file"))
		return nil
	}
	path := d.resolve(s)
	data, err := readRegularFile(path, maxInputFileSize)
	switch {
	case errors.Is(err, errTooLarge):
		d.add(errInputFileTooLarge(a.Expr.Range(), path))
		return nil
	case err != nil:
		d.add(errInputFile(a.Expr.Range(), s, path, err))
		return nil
	}
	f.Input, f.InputFile = string(data), path
	return a
}

// errTooLarge is returned by readRegularFile for a file above its limit.
var errTooLarge = errors.New("file too large")

// errNotRegular is returned by readRegularFile for anything but a regular
// file: a policy must not make fleetplan read a device or wait on a pipe.
var errNotRegular = errors.New("not a regular file")

// readRegularFile reads a regular file of at most limit bytes.
func readRegularFile(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errNotRegular
	}
	if info.Size() > limit {
		return nil, errTooLarge
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}

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

// inspectJobspec parses the jobspec (an HCL file; JSON jobspecs are left to
// the Nomad server) to warn early about a syntax error and to learn its
// port labels for the health checks. It never evaluates the jobspec: the
// Nomad server does that.
func (d *decoder) inspectJobspec(a *hcl2.Attribute, path string) {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return
	}
	src, err := readRegularFile(path, maxJobspecSize)
	if err != nil {
		return
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl2.InitialPos)
	if diags.HasErrors() {
		for _, diag := range diags {
			if diag.Severity == hcl2.DiagError {
				d.add(warnJobspecSyntax(a.Expr.Range(), filepath.Base(path), diag))
				return
			}
		}
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return
	}
	d.jobPorts, d.jobPortsOK = jobspecPorts(body)
}

// jobspecPorts lists the port labels a parsed Nomad jobspec declares in its
// network blocks; ok is false when it holds no job block.
func jobspecPorts(body *hclsyntax.Body) (labels []string, ok bool) {
	var walk func(b *hclsyntax.Body, depth int)
	walk = func(b *hclsyntax.Body, depth int) {
		for _, blk := range b.Blocks {
			switch {
			case depth == 0 && blk.Type == "job":
				ok = true
				walk(blk.Body, 1)
			case depth > 0 && blk.Type == "port" && len(blk.Labels) == 1:
				if !slices.Contains(labels, blk.Labels[0]) {
					labels = append(labels, blk.Labels[0])
				}
			case depth > 0 && depth < 5:
				walk(blk.Body, depth+1)
			}
		}
	}
	walk(body, 0)
	sort.Strings(labels)
	return labels, ok
}

func isSpace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
}
