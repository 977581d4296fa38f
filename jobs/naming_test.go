package jobs

import (
	"testing"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/store"
)

// In the default namespace every name stays what it always was; in
// another, the slot jobs, the slot metadata and the KV folder carry the
// namespace, so one application in two namespaces does not collide.
func TestQualifiedNames(t *testing.T) {
	for _, ns := range []string{"", "default"} {
		n := QualifiedName("edgeinfer", ns)
		if n != "edgeinfer" || contract.SlotJobID(n, "blue") != "edgeinfer-blue" || contract.SlotMetaKey(n) != "fleetplan.edgeinfer.slot" ||
			store.NewLayout("").Rollout(n) != "fleetplan/rollouts/edgeinfer/" {
			t.Errorf("namespace %q: %s", ns, n)
		}
	}
	a, b := QualifiedName("edgeinfer", "team-a"), QualifiedName("edgeinfer", "team-b")
	if a != "edgeinfer.team-a" || a == b {
		t.Fatalf("qualified names %q and %q", a, b)
	}
	if got := contract.SlotJobID(a, "green"); got != "edgeinfer.team-a-green" {
		t.Errorf("slot job %q", got)
	}
	key := contract.SlotMetaKey(a)
	if key != "fleetplan.edgeinfer.team-a.slot" || key == contract.SlotMetaKey(b) {
		t.Errorf("slot meta key %q", key)
	}
	if app, ok := contract.AppOfSlotMetaKey(key); !ok || app != a {
		t.Errorf("AppOfSlotMetaKey(%q) = %q, %v", key, app, ok)
	}
	l := store.NewLayout("")
	if l.State(a) != "fleetplan/rollouts/edgeinfer.team-a/state" || l.State(a) == l.State(b) || l.App(a) == l.App("edgeinfer") {
		t.Errorf("KV keys %q %q", l.State(a), l.App(a))
	}
	if QualifiedName(a, "team-a") != a {
		t.Errorf("a qualified name is qualified again: %q", QualifiedName(a, "team-a"))
	}
}
