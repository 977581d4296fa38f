package checks

import "slices"

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
	// epoch moves when byNode gets new entries (a node's first check, in
	// an answer or a change): health computed for a device whose node had
	// no entry then may be stale. An entry that leaves byNode gets a new
	// generation instead.
	epoch uint64
	// applied counts the answers applied incrementally.
	applied uint64
	// Scratch space of rebuild, kept between answers.
	slots, order, counts []int32
	nodes                []*nodeChecks
}

// nodeChecks are one node's checks (a handful: a slice, searched by check
// ID); gen moves whenever one of them changes, so health computed from
// them can be cached.
type nodeChecks struct {
	gen    uint64
	checks []checkInfo
	// mark and slot are rebuild's: the rebuild (its generation) that saw
	// the node in its answer, and the node's position there.
	mark uint64
	slot int32
}

// find is the position of a check, -1 when absent.
func (n *nodeChecks) find(checkID string) int { return findCheck(n.checks, checkID) }

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

// rebuild replaces the cache by the answer, in place: a node whose checks
// are exactly those it had keeps its entry and its generation (the health
// computed from them stays valid), a node whose checks changed gets the
// answer's and a new generation, a node without checks in the answer
// leaves the cache (its entry's generation moves, so that health computed
// from it is computed again). The answer's checks are grouped by node with
// a counting sort on scratch indexes (no sort, one map lookup per node
// when the answer lists a node's checks together, as Consul does).
func (c *checkCache) rebuild(cs []checkInfo, index uint64) {
	c.gen++
	gen := c.gen
	if len(c.byNode) == 0 {
		// The first answer: sized for nodes of a few checks each.
		c.byNode = make(map[string]*nodeChecks, len(cs)/3)
	}
	// Each check's node (its position in nodes, in the order of the
	// nodes' first checks) and each node's number of checks.
	slots := growInt32(c.slots, len(cs))
	nodes, counts := c.nodes[:0], c.counts[:0]
	var fresh []nodeChecks // entries of nodes new to the cache
	added := false
	var last *nodeChecks
	lastName := ""
	for i := range cs {
		name := cs[i].Node
		n := last
		if n == nil || name != lastName {
			n = c.byNode[name]
			if n == nil {
				if len(fresh) == cap(fresh) {
					fresh = make([]nodeChecks, 0, max(64, (len(cs)-i)/3))
				}
				fresh = append(fresh, nodeChecks{})
				n = &fresh[len(fresh)-1]
				c.byNode[name] = n
				added = true
			}
			last, lastName = n, name
		}
		if n.mark != gen {
			n.mark, n.slot = gen, int32(len(nodes))
			nodes = append(nodes, n)
			counts = append(counts, 0)
		}
		slots[i] = n.slot
		counts[n.slot]++
	}
	// order lists the answer's positions node by node: node s's checks
	// are order[start(s):counts[s]] once counts holds the ends.
	var sum int32
	for s := range counts {
		sum += counts[s]
		counts[s] = sum - counts[s] // start, moved to the end below
	}
	order := growInt32(c.order, len(cs))
	for i := range cs {
		s := slots[i]
		order[counts[s]] = int32(i)
		counts[s]++
	}
	from := int32(0)
	for s, n := range nodes {
		seg := order[from:counts[s]]
		from = counts[s]
		if sameChecks(n.checks, cs, seg) {
			continue
		}
		list := make([]checkInfo, 0, len(seg))
		for _, i := range seg {
			if j := findCheck(list, cs[i].CheckID); j >= 0 {
				list[j] = cs[i]
			} else {
				list = append(list, cs[i])
			}
		}
		n.checks, n.gen = list, gen
	}
	if len(nodes) != len(c.byNode) {
		for name, n := range c.byNode {
			if n.mark != gen {
				n.checks, n.gen = nil, gen
				delete(c.byNode, name)
			}
		}
	}
	if added {
		c.epoch++
	}
	clear(nodes)
	c.slots, c.order, c.nodes, c.counts = slots, order, nodes[:0], counts[:0]
	c.count = len(cs)
	c.index = index
}

// growInt32 is s with length n (its array reused when large enough).
func growInt32(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}

// findCheck is the position of a check in list, -1 when absent.
func findCheck(list []checkInfo, checkID string) int {
	for i := range list {
		if list[i].CheckID == checkID {
			return i
		}
	}
	return -1
}

// sameChecks reports whether a node's checks are exactly the answer's
// checks at positions seg, in that order.
func sameChecks(have []checkInfo, cs []checkInfo, seg []int32) bool {
	if len(have) != len(seg) {
		return false
	}
	for j, i := range seg {
		if !sameCheck(&have[j], &cs[i]) {
			return false
		}
	}
	return true
}

func sameCheck(a, b *checkInfo) bool {
	return a.ModifyIndex == b.ModifyIndex && a.Status == b.Status && a.CheckID == b.CheckID && a.Node == b.Node &&
		a.Name == b.Name && a.Output == b.Output && a.ServiceID == b.ServiceID && a.ServiceName == b.ServiceName &&
		slices.Equal(a.ServiceTags, b.ServiceTags)
}

// nodeGen is the generation of a node's checks (0 for a node without).
func (c *checkCache) nodeGen(node string) uint64 {
	if n := c.byNode[node]; n != nil {
		return n.gen
	}
	return 0
}
