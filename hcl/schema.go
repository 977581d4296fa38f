package hcl

import (
	"sort"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// blockSpec describes one block type of the policy language: its labels,
// attributes and nested blocks. The tree below is the single definition of
// the schema; the hcl.BodySchema values and the "belongs in" index used by
// the unknown-name diagnostics are derived from it.
type blockSpec struct {
	Type   string
	Labels []string
	Attrs  []string
	Blocks []*blockSpec
	// Multi says the block may appear more than once in its parent.
	Multi bool
}

var (
	variantSpec = &blockSpec{Type: "variant", Labels: []string{"class"}, Multi: true,
		Attrs: []string{"env"}}
	fleetSpec = &blockSpec{Type: "fleet",
		Attrs: []string{"selector", "datacenters"}}
	releaseSpec = &blockSpec{Type: "release",
		Attrs:  []string{"jobspec", "version", "env"},
		Blocks: []*blockSpec{variantSpec}}
	canarySpec = &blockSpec{Type: "canary",
		Attrs: []string{"percent", "min_per_class", "soak", "approval"}}
	waveSpec = &blockSpec{Type: "wave", Multi: true,
		Attrs: []string{"percent", "soak"}}
	connectivitySpec = &blockSpec{Type: "connectivity",
		Attrs: []string{"heartbeat_timeout"}}
	systemSpec = &blockSpec{Type: "system",
		Attrs: []string{"max_cpu_percent", "max_memory_percent", "max_disk_percent", "max_temperature_c"}}
	appMetricsSpec = &blockSpec{Type: "metrics",
		Attrs: []string{"path", "format", "requests", "errors", "latency"}}
	applicationSpec = &blockSpec{Type: "application",
		Attrs:  []string{"port", "path", "interval", "timeout", "expect_version", "max_restarts"},
		Blocks: []*blockSpec{appMetricsSpec}}
	functionalSpec = &blockSpec{Type: "functional",
		Attrs: []string{"probe", "path", "input", "input_file", "expect", "max_latency", "command", "args", "interval"}}
	healthSpec = &blockSpec{Type: "health",
		Attrs:  []string{"grace"},
		Blocks: []*blockSpec{connectivitySpec, systemSpec, applicationSpec, functionalSpec}}
	rollbackSpec = &blockSpec{Type: "rollback",
		Attrs: []string{"max_failure_percent", "max_error_rate", "max_p95_latency_increase_percent", "max_offline_after_switch_percent", "scope"}}
	offlineSpec = &blockSpec{Type: "offline",
		Attrs: []string{"catch_up", "max_offline_percent"}}
	notifySpec = &blockSpec{Type: "notify", Labels: []string{"type", "name"}, Multi: true,
		Attrs: []string{"url", "headers", "events", "timeout", "level"}}
	toleranceSpec = &blockSpec{Type: "tolerance",
		Attrs: []string{"error_rate", "p95_latency_percent", "probe_failure_rate"}}
	abSpec = &blockSpec{Type: "ab",
		Attrs:  []string{"duration", "promote_if", "confidence", "min_requests", "min_samples"},
		Blocks: []*blockSpec{toleranceSpec}}
	rolloutSpec = &blockSpec{Type: "rollout", Labels: []string{"application"}, Multi: true,
		Attrs:  []string{"strategy", "max_parallel"},
		Blocks: []*blockSpec{fleetSpec, releaseSpec, canarySpec, waveSpec, abSpec, healthSpec, rollbackSpec, offlineSpec, notifySpec}}
	// fileSpec is the top level of a policy file.
	fileSpec = &blockSpec{Type: "", Blocks: []*blockSpec{rolloutSpec, notifySpec}}
)

// bodySchema returns the hcl.BodySchema of the block's body. No attribute is
// marked required: missing ones are reported by the decoder with messages
// that say what to write.
func (s *blockSpec) bodySchema() *hcl2.BodySchema {
	bs := &hcl2.BodySchema{}
	for _, a := range s.Attrs {
		bs.Attributes = append(bs.Attributes, hcl2.AttributeSchema{Name: a})
	}
	for _, b := range s.Blocks {
		bs.Blocks = append(bs.Blocks, hcl2.BlockHeaderSchema{Type: b.Type, LabelNames: b.Labels})
	}
	return bs
}

func (s *blockSpec) hasAttr(name string) bool {
	for _, a := range s.Attrs {
		if a == name {
			return true
		}
	}
	return false
}

func (s *blockSpec) hasBlock(name string) bool { return s.block(name) != nil }

// block returns the spec of a nested block type, or nil.
func (s *blockSpec) block(name string) *blockSpec {
	for _, b := range s.Blocks {
		if b.Type == name {
			return b
		}
	}
	return nil
}

// where says where the block's content is, for messages: "in a canary
// block", "at the top level of a policy file".
func (s *blockSpec) where() string {
	if s.Type == "" {
		return "at the top level of a policy file"
	}
	return "in " + article(s.Type) + " " + s.Type + " block"
}

// attrHomes and blockHomes map every attribute and block name of the
// language to the block types that accept it, so that a name written in the
// wrong block can be pointed to the right one.
var attrHomes, blockHomes = buildHomes()

func buildHomes() (attrs, blocks map[string][]string) {
	attrs, blocks = map[string][]string{}, map[string][]string{}
	var walk func(s *blockSpec)
	walk = func(s *blockSpec) {
		for _, a := range s.Attrs {
			attrs[a] = append(attrs[a], s.Type)
		}
		for _, b := range s.Blocks {
			blocks[b.Type] = append(blocks[b.Type], s.Type)
			walk(b)
		}
	}
	walk(fileSpec)
	for _, m := range []map[string][]string{attrs, blocks} {
		for k := range m {
			sort.Strings(m[k])
		}
	}
	return attrs, blocks
}
