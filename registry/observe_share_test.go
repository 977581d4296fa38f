package registry

import (
	"maps"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Nodes running the same slots and versions share one Apps map, the same
// from one observation to the next; a change of any slot or version (or of
// the set of applications) gets a map of its own, and no map is modified.
func TestShareApps(t *testing.T) {
	r := &Registry{}
	apps := func(kv ...string) map[string]scheduler.AppSlot {
		m := map[string]scheduler.AppSlot{}
		for i := 0; i+2 < len(kv); i += 3 {
			m[kv[i]] = scheduler.AppSlot{Slot: kv[i+1], Version: kv[i+2]}
		}
		return m
	}
	observe := func() map[string]scheduler.NomadNode {
		return map[string]scheduler.NomadNode{
			"a": {Name: "a", Apps: apps("web", "blue", "1", "db", "green", "2")},
			"b": {Name: "b", Apps: apps("db", "green", "2", "web", "blue", "1")},
			"c": {Name: "c", Apps: apps("web", "green", "1", "db", "green", "2")},
			"d": {Name: "d", Apps: apps("web", "blue", "12", "db", "green", "")},
			"e": {Name: "e", Apps: apps("web", "blue", "1")},
			"f": {Name: "f"},
		}
	}
	first := observe()
	want := map[string]map[string]scheduler.AppSlot{}
	for name, n := range first {
		want[name] = maps.Clone(n.Apps)
	}
	r.shareApps(first)
	for name, n := range first {
		if !maps.Equal(n.Apps, want[name]) {
			t.Fatalf("node %s: apps %v, want %v", name, n.Apps, want[name])
		}
	}
	if !sameMap(first["a"].Apps, first["b"].Apps) {
		t.Error("equal apps are not shared")
	}
	for _, other := range []string{"c", "d", "e"} {
		if sameMap(first["a"].Apps, first[other].Apps) {
			t.Errorf("node %s shares the map of different apps", other)
		}
	}
	if first["f"].Apps != nil {
		t.Error("a node without apps got a map")
	}
	second := observe()
	second["e"] = scheduler.NomadNode{Name: "e", Apps: apps("web", "green", "2")} // changed
	r.shareApps(second)
	for _, name := range []string{"a", "b", "c", "d"} {
		if !sameMap(first[name].Apps, second[name].Apps) {
			t.Errorf("node %s: the next observation does not reuse its map", name)
		}
	}
	if sameMap(first["e"].Apps, second["e"].Apps) || second["e"].Apps["web"].Slot != "green" || first["e"].Apps["web"].Slot != "blue" {
		t.Errorf("a changed node: %v, before %v", second["e"].Apps, first["e"].Apps)
	}
}
