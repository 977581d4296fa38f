package hcl

import (
	"sort"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Decoding: a rollout block's body is taken apart against the schema
// (content reports unknown and duplicate names), each block goes to its
// rules (rules_*.go), and typed values are read at the expression by
// values.go. The decoder goes on after a problem, collecting diagnostics.

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

	// fileNotify are the notify blocks at the top level of the file, which
	// every rollout of the file gets.
	fileNotify []scheduler.NotifierSpec
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
	d.rolloutName(b.LabelRanges[0], name)
	c := d.content(b.Body, rolloutSpec)
	d.rolloutSettings(c, p)

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
		p.Canary, canaryOK = d.canary(cb, p.Strategy)
	} else {
		missing("canary")
	}

	p.Waves = d.waves(b, blocks["wave"], p, canaryOK)
	if ab := single(blocks, "ab"); ab != nil {
		p.AB = d.ab(ab, p)
	}

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
	p.Notify = append(append([]scheduler.NotifierSpec(nil), d.fileNotify...), d.notifyBlocks(blocks["notify"], d.fileNotify)...)
	return p
}
