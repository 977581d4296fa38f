package checks

// checkCache holds the followed Consul checks by node. An answer of the
// checks query replaces it; when the answer only differs by checks whose
// ModifyIndex moved past the previous answer's index (the common case: a
// check changed status), only those are applied, so one changed check
// costs one scan of the answer and touches one node, whatever the fleet
// size (BenchmarkOneCheckChange).
type checkCache struct {
	// index is the previous answer's index (0: none, or to be rebuilt).
	index uint64
	count int
	// byNode maps a node name to its checks by check ID.
	byNode map[string]*nodeChecks
	// gen is handed out to the nodes that change.
	gen uint64
	// epoch moves when byNode gets new entries (a rebuild, a node's first
	// check): a pointer to an entry taken in another epoch may be stale.
	epoch uint64
	// applied counts the answers applied incrementally.
	applied uint64
}

// nodeChecks are one node's checks (a handful: a slice, searched by check
// ID); gen moves whenever one of them changes, so health computed from
// them can be cached.
type nodeChecks struct {
	gen    uint64
	checks []checkInfo
}

// find is the position of a check, -1 when absent.
func (n *nodeChecks) find(checkID string) int {
	for i := range n.checks {
		if n.checks[i].CheckID == checkID {
			return i
		}
	}
	return -1
}

func newCheckCache() checkCache {
	return checkCache{byNode: map[string]*nodeChecks{}}
}

// reset makes the next merge rebuild the cache.
func (c *checkCache) reset() { c.index = 0 }

// key of a check: check IDs are unique on a node.
func (c *checkCache) lookup(node, checkID string) (checkInfo, bool) {
	n := c.byNode[node]
	if n == nil {
		return checkInfo{}, false
	}
	if i := n.find(checkID); i >= 0 {
		return n.checks[i], true
	}
	return checkInfo{}, false
}

// merge applies an answer of the checks query at index. When the answer
// only differs from the previous one by checks whose ModifyIndex moved past
// the previous answer's index (applyChanges), only those are applied;
// otherwise (first answer, a check left the answer, the index went back,
// a check without an index) the answer replaces the cache (rebuild). Both
// paths leave the same cache (TestCheckCacheIncrementalMatchesRebuild).
//
// The incremental path relies on Consul's indexes only: a check that
// changes in any way (status, output, its service's tags) takes a new
// ModifyIndex, and the answer's index is at least every ModifyIndex in it.
// It does not rely on outputs being fresh: with Consul's default
// check_update_interval an output-only change reaches the servers later,
// and then takes its own ModifyIndex like any other change.
func (c *checkCache) merge(cs []checkInfo, index uint64) {
	if c.index != 0 && index >= c.index && c.applyChanges(cs, index) {
		return
	}
	c.rebuild(cs, index)
}

// applyChanges applies the checks modified after the previous answer, if
// those explain the whole answer (no check left the answer); it reports
// whether it did.
func (c *checkCache) applyChanges(cs []checkInfo, index uint64) bool {
	prev := c.index
	unchanged, changedKnown := 0, 0
	var changed []int
	for i := range cs {
		mi := cs[i].ModifyIndex
		if mi == 0 {
			// No index to compare: rebuild.
			return false
		}
		if mi <= prev {
			unchanged++
			continue
		}
		changed = append(changed, i)
	}
	for _, i := range changed {
		if _, ok := c.lookup(cs[i].Node, cs[i].CheckID); ok {
			changedKnown++
		}
	}
	if unchanged+changedKnown != c.count {
		// Some check left the answer (deregistered, or no longer
		// selected): rebuild.
		return false
	}
	for _, i := range changed {
		c.put(cs[i])
	}
	c.count = len(cs)
	c.index = index
	c.applied++
	return true
}

func (c *checkCache) put(ci checkInfo) {
	n := c.byNode[ci.Node]
	if n == nil {
		n = &nodeChecks{}
		c.byNode[ci.Node] = n
		c.epoch++
	}
	if i := n.find(ci.CheckID); i >= 0 {
		n.checks[i] = ci
	} else {
		n.checks = append(n.checks, ci)
	}
	c.gen++
	n.gen = c.gen
}

// rebuild replaces the cache by the answer; every node gets a new
// generation.
func (c *checkCache) rebuild(cs []checkInfo, index uint64) {
	c.gen++
	byNode := make(map[string]*nodeChecks, len(c.byNode))
	// One allocation for the nodes' entries; the checks of a node mostly
	// come together in an answer (sorted by node), so each node's slice
	// is grown rarely.
	entries := make([]nodeChecks, 0, len(c.byNode)+16)
	for i := range cs {
		ci := &cs[i]
		n := byNode[ci.Node]
		if n == nil {
			if len(entries) == cap(entries) {
				entries = make([]nodeChecks, 0, max(64, len(cs)/3))
			}
			entries = append(entries, nodeChecks{gen: c.gen})
			n = &entries[len(entries)-1]
			byNode[ci.Node] = n
		}
		if j := n.find(ci.CheckID); j >= 0 {
			n.checks[j] = *ci
		} else {
			n.checks = append(n.checks, *ci)
		}
	}
	c.byNode = byNode
	c.epoch++
	c.count = len(cs)
	c.index = index
}

// nodeGen is the generation of a node's checks (0 for a node without).
func (c *checkCache) nodeGen(node string) uint64 {
	if n := c.byNode[node]; n != nil {
		return n.gen
	}
	return 0
}
