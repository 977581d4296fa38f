package checks

import "testing"

func TestCheckCacheMerge(t *testing.T) {
	c := newCheckCache()
	a := checkInfo{Node: "n1", CheckID: "serfHealth", Status: "passing", ModifyIndex: 5}
	b := checkInfo{Node: "n2", CheckID: "serfHealth", Status: "passing", ModifyIndex: 6}
	c.merge([]checkInfo{a, b}, 10)
	g1, g2 := c.nodeGen("n1"), c.nodeGen("n2")
	if g1 == 0 || g2 == 0 {
		t.Fatalf("generations after the first answer: %d %d", g1, g2)
	}

	// One check changed: only its node moves.
	b.Status, b.ModifyIndex = "critical", 11
	c.merge([]checkInfo{a, b}, 11)
	if got, _ := c.lookup("n2", "serfHealth"); got.Status != "critical" {
		t.Errorf("changed check not applied: %+v", got)
	}
	if c.nodeGen("n1") != g1 || c.nodeGen("n2") == g2 {
		t.Errorf("generations: n1 %d->%d, n2 %d->%d; want only n2 to move", g1, c.nodeGen("n1"), g2, c.nodeGen("n2"))
	}

	// A new check is added incrementally.
	n3 := checkInfo{Node: "n3", CheckID: "serfHealth", Status: "passing", ModifyIndex: 12}
	c.merge([]checkInfo{a, b, n3}, 12)
	if _, ok := c.lookup("n3", "serfHealth"); !ok || c.count != 3 {
		t.Errorf("added check missing (count %d)", c.count)
	}

	// A check left the answer: rebuilt, it is gone.
	c.merge([]checkInfo{a, n3}, 13)
	if _, ok := c.lookup("n2", "serfHealth"); ok {
		t.Error("removed check still cached")
	}
	if c.count != 2 {
		t.Errorf("count = %d", c.count)
	}

	// The index went backwards: rebuilt from the answer.
	a.Status = "warning"
	c.merge([]checkInfo{a}, 3)
	if got, _ := c.lookup("n1", "serfHealth"); got.Status != "warning" || c.index != 3 {
		t.Errorf("after reset: %+v index %d", got, c.index)
	}
	if _, ok := c.lookup("n3", "serfHealth"); ok {
		t.Error("check absent from the reset answer still cached")
	}
}
