package hcl

import (
	"slices"
	"strings"
	"testing"
)

// specs lists every block spec of the language by type.
func specs() map[string]*blockSpec {
	out := map[string]*blockSpec{}
	var walk func(s *blockSpec)
	walk = func(s *blockSpec) {
		out[s.Type] = s
		for _, b := range s.Blocks {
			walk(b)
		}
	}
	walk(fileSpec)
	return out
}

// TestMessageTables guards the tables the diagnostics draw on: every
// attribute has an example, and every key names a real block and attribute,
// so that no message ever comes out with a hole.
func TestMessageTables(t *testing.T) {
	all := specs()
	for typ, s := range all {
		for _, a := range s.Attrs {
			if exampleFor(typ, a) == "" {
				t.Errorf("no example for %s.%s", typ, a)
			}
		}
	}
	checkKeys := func(table string, keys []string) {
		for _, k := range keys {
			block, attr, ok := strings.Cut(k, ".")
			s := all[block]
			if !ok || s == nil || !s.hasAttr(attr) {
				t.Errorf("%s: key %q names no attribute of the language", table, k)
			}
		}
	}
	keysOf := func(m map[string]string) []string {
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		return ks
	}
	checkKeys("requiredWhy", keysOf(requiredWhy))
	checkKeys("rangeWhy", keysOf(rangeWhy))
	var dotted []string
	for k := range attrExamples {
		if strings.Contains(k, ".") {
			dotted = append(dotted, k)
		} else if len(attrHomes[k]) == 0 {
			t.Errorf("attrExamples: %q is no attribute of the language", k)
		}
	}
	checkKeys("attrExamples", dotted)
	for typ := range missingBlockHelp {
		if all[typ] == nil {
			t.Errorf("missingBlockHelp: %q is no block of the language", typ)
		}
	}
	for k := range labelHelp {
		block, label, _ := strings.Cut(k, ".")
		if s := all[block]; s == nil || !slices.Contains(s.Labels, label) {
			t.Errorf("labelHelp: %q names no block label", k)
		}
	}
}

func TestStepSizeHint(t *testing.T) {
	cases := []struct {
		canary float64
		waves  []float64
		want   string
	}{
		{2, []float64{10, 40, 25, 23}, "12, 52, 77, 100"}, // with the canary
		{5, []float64{20, 30, 45}, "25, 55, 100"},
		{5, []float64{20, 30, 50}, "20, 50, 100"}, // the waves alone add up to 100
		{5, []float64{10, 50, 100}, ""},           // already cumulative
		{5, []float64{2, 93}, "7, 100"},           // the first step starts from the canary
		{5, []float64{10, 20}, ""},                // adds up to nothing
	}
	for _, c := range cases {
		got := stepSizeHint(c.canary, c.waves)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want+".") {
			t.Errorf("stepSizeHint(%v, %v) = %q, want %q", c.canary, c.waves, got, c.want)
		}
	}
}

func TestIsBigBang(t *testing.T) {
	for _, s := range []string{"big-bang", "Big Bang", "bigbang", "all-at-once", "all_at_once", "recreate", "immediate"} {
		if !isBigBang(s) {
			t.Errorf("isBigBang(%q) = false", s)
		}
	}
	for _, s := range []string{"canary-rolling", "blue-green", "rolling-update", "a-b", "bang"} {
		if isBigBang(s) {
			t.Errorf("isBigBang(%q) = true", s)
		}
	}
}
