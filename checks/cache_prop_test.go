package checks

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// propCluster is a model of what the watcher follows: Consul's checks with
// their modify indexes and the table's index (every write takes the next
// index, a deletion too), Nomad's nodes and the slot job's allocations.
type propCluster struct {
	r      *rand.Rand
	index  uint64
	checks map[[2]string]checkInfo // by node and check ID
	nodes  []nodeInfo
	allocs []allocInfo
	allocN int
}

const (
	propAgent   = "fleetplan-agent"
	propService = "app"
)

var propNodes = []string{"n1", "n2", "n3", "n4", "n5", "n6", "n7"}

func newPropCluster(seed uint64) *propCluster {
	m := &propCluster{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), index: 100, checks: map[[2]string]checkInfo{}}
	// n7 has no Nomad node (a Consul agent only) at first; n1..n6 do.
	for _, n := range propNodes[:6] {
		m.nodes = append(m.nodes, nodeInfo{ID: "id-" + n, Name: n, Status: "ready"})
		m.newAlloc("id-" + n)
	}
	for range 12 {
		m.addCheck()
	}
	for _, n := range propNodes[:5] {
		m.put(checkInfo{Node: n, CheckID: contract.SerfHealthCheck, Name: "Serf Health Status", Status: "passing"})
	}
	return m
}

func (m *propCluster) pick(xs []string) string { return xs[m.r.IntN(len(xs))] }

// put writes a check at the next index.
func (m *propCluster) put(c checkInfo) {
	m.index++
	c.ModifyIndex = m.index
	m.checks[[2]string{c.Node, c.CheckID}] = c
}

// keys are the checks' keys, sorted (the model's iteration is seeded).
func (m *propCluster) keys() [][2]string {
	ks := make([][2]string, 0, len(m.checks))
	for k := range m.checks {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b [2]string) int {
		if c := strings.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return strings.Compare(a[1], b[1])
	})
	return ks
}

func (m *propCluster) randomCheck() (checkInfo, bool) {
	ks := m.keys()
	if len(ks) == 0 {
		return checkInfo{}, false
	}
	return m.checks[ks[m.r.IntN(len(ks))]], true
}

func (m *propCluster) output(status string) string {
	switch m.r.IntN(4) {
	case 0:
		return ""
	case 1:
		return fmt.Sprintf(`HTTP GET http://127.0.0.1:1/health: 200 OK Output: {"status":%q,"version":"1.0.%d"}`, status, m.r.IntN(3))
	case 2:
		return fmt.Sprintf("version 1.0.%d\nmetrics: {\"error_rate\":0.0%d,\"p95_latency_ms\":%d,\"rss_mb\":null,\"requests_total\":null,\"cpu_percent\":null,\"memory_percent\":null}", m.r.IntN(3), m.r.IntN(9), 10+m.r.IntN(5))
	}
	return "cpu 12% < 90%"
}

func (m *propCluster) status() string { return m.pick([]string{"passing", "warning", "critical"}) }

// addCheck registers a new check (or registers one again): a node check,
// a check of an instance of the slot service (of a current or an older
// allocation, in either slot), of the agent's service, or of another
// service.
func (m *propCluster) addCheck() {
	node := m.pick(propNodes)
	st := m.status()
	c := checkInfo{Node: node, Status: st, Output: m.output(st)}
	switch m.r.IntN(4) {
	case 0:
		l := m.r.IntN(4) + 1
		c.CheckID, c.Name = fmt.Sprintf("fleetplan-l%d", l), fmt.Sprintf("fleetplan L%d check", l)
	case 1, 2:
		alloc := fmt.Sprintf("a%d", m.r.IntN(m.allocN+1))
		for _, a := range m.allocs {
			if a.NodeID == "id-"+node && m.r.IntN(2) == 0 {
				alloc = a.ID
			}
		}
		c.ServiceName, c.ServiceID = propService, contract.NomadTaskServicePrefix+alloc+"-app-app-http"
		c.CheckID, c.Name = "_nomad-check-"+alloc, m.pick([]string{"fleetplan L3 application", `service: "app" check`})
		c.ServiceTags = []string{contract.SlotTag(m.pick([]string{"blue", "blue", "green"}))}
	default:
		c.ServiceName = m.pick([]string{propAgent, "other"})
		c.ServiceID = c.ServiceName + "-1"
		l := m.r.IntN(4) + 1
		c.CheckID, c.Name = fmt.Sprintf("agent-l%d", l), fmt.Sprintf("fleetplan L%d agent", l)
	}
	m.put(c)
}

func (m *propCluster) newAlloc(nodeID string) {
	m.allocN++
	for i := range m.allocs {
		if m.allocs[i].NodeID == nodeID && m.allocs[i].DesiredStatus == "run" {
			m.allocs[i].DesiredStatus, m.allocs[i].ClientStatus = "stop", "complete"
		}
	}
	m.allocs = append(m.allocs, allocInfo{ID: fmt.Sprintf("a%d", m.allocN), JobID: "app-blue", NodeID: nodeID,
		ClientStatus: m.pick([]string{"pending", "running", "running"}), DesiredStatus: "run", JobVersion: 1, CreateIndex: uint64(m.allocN)})
}

// step makes one random change; it reports whether the nodes or the
// allocations changed (the checks answer may or may not).
func (m *propCluster) step() (nomadChanged bool) {
	switch op := m.r.IntN(20); {
	case op < 6: // a status change (with or without the output)
		if c, ok := m.randomCheck(); ok {
			c.Status = m.status()
			if m.r.IntN(2) == 0 {
				c.Output = m.output(c.Status)
			}
			m.put(c)
		}
	case op < 8: // an output change only
		if c, ok := m.randomCheck(); ok {
			c.Output = m.output(c.Status) + " "
			m.put(c)
		}
	case op < 11: // a new check
		m.addCheck()
	case op < 13: // a check deregistered
		if c, ok := m.randomCheck(); ok {
			delete(m.checks, [2]string{c.Node, c.CheckID})
			m.index++
		}
	case op < 14: // deregistered and registered again, unchanged
		if c, ok := m.randomCheck(); ok {
			delete(m.checks, [2]string{c.Node, c.CheckID})
			m.index++
			m.put(c)
		}
	case op < 15: // the service's tags change: it enters or leaves the slot
		if c, ok := m.randomCheck(); ok && c.ServiceName == propService {
			tag := contract.SlotTag("blue")
			if slices.Contains(c.ServiceTags, tag) {
				tag = contract.SlotTag("green")
			}
			c.ServiceTags = []string{tag}
			m.put(c)
		}
	case op < 16: // a node's status
		i := m.r.IntN(len(m.nodes))
		m.nodes[i].Status = m.pick([]string{"ready", "down", "initializing"})
		return true
	case op < 17: // a new allocation on a node (its old instance's checks stay until deregistered)
		m.newAlloc(m.nodes[m.r.IntN(len(m.nodes))].ID)
		return true
	case op < 18: // an allocation's status or restarts
		i := m.r.IntN(len(m.allocs))
		m.allocs[i].ClientStatus = m.pick([]string{"running", "failed", "pending"})
		m.allocs[i].Restarts += m.r.IntN(2)
		return true
	case op < 19: // n7 joins Nomad, or a node leaves it
		if len(m.nodes) < len(propNodes) {
			m.nodes = append(m.nodes, nodeInfo{ID: "id-n7", Name: "n7", Status: "ready"})
			m.newAlloc("id-n7")
		} else {
			m.nodes = m.nodes[:len(m.nodes)-1]
		}
		return true
	default: // a write the watcher does not follow: the index moves
		m.index++
	}
	return false
}

// answer is the checks query's answer: the followed checks (node checks,
// the agent service's layer checks, the slot service's checks in the
// blue slot), in a random order, at the table's index.
func (m *propCluster) answer() []checkInfo {
	var out []checkInfo
	for _, k := range m.keys() {
		c := m.checks[k]
		switch {
		case c.ServiceID == "":
		case c.ServiceName == propAgent:
		case c.ServiceName == propService && slices.Contains(c.ServiceTags, contract.SlotTag("blue")):
		default:
			continue
		}
		c.ServiceTags = slices.Clone(c.ServiceTags)
		out = append(out, c)
	}
	m.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// restore is a Consul snapshot restore (or a new cluster): the indexes go
// back.
func (m *propCluster) restore() {
	m.index /= 2
	for k, c := range m.checks {
		c.ModifyIndex = min(c.ModifyIndex, m.index)
		m.checks[k] = c
	}
}

// propWatcher is a watcher fed by hand (no loops) with the model's nodes
// and allocations.
func propWatcher(m *propCluster) (*Watcher, *jobWatch) {
	w := newWatcher(newFakeSource(), nil, blocking.Clock{}, WithConfig(Config{AgentServices: []string{propAgent}}))
	w.stopped = true // nothing to restart: the test feeds the answers
	w.viewMin = 1    // every list has its view (healthView)
	jw := &jobWatch{id: "app-blue", slot: "blue", allocs: map[string][]allocInfo{}, cache: map[string]*cachedHealth{}}
	w.jobs[jw.id] = jw
	propPublish(w, m, true)
	return w, jw
}

// propPublish publishes the model's nodes and allocations; the job is read
// again (its view in the answer) on the first answer and now and then.
func propPublish(w *Watcher, m *propCluster, first bool) {
	w.publishNodesLocked(slices.Clone(m.nodes))
	a := allocsAnswer{allocs: slices.Clone(m.allocs)}
	if first || m.r.IntN(4) == 0 {
		view := jobView{Found: true, Latest: 1, Versions: map[uint64]string{1: "1.0.0+t1"}, Services: []string{propService}}
		a.views = map[string]jobRead{"app-blue": {view: view}}
	}
	w.publishAllocsLocked([]string{"app-blue"}, a)
}

// cacheState is a cache's content, independent of the order of the
// answers: each node's checks sorted by check ID.
func cacheState(c *checkCache) map[string][]checkInfo {
	out := map[string][]checkInfo{}
	for node, n := range c.byNode {
		if len(n.checks) == 0 {
			continue
		}
		cs := slices.Clone(n.checks)
		slices.SortFunc(cs, func(a, b checkInfo) int { return strings.Compare(a.CheckID, b.CheckID) })
		out[node] = cs
	}
	return out
}

// TestCheckCacheIncrementalMatchesRebuild applies random sequences of
// check changes, registrations and deregistrations (and changes of nodes
// and allocations) to a watcher that merges every answer into its caches,
// and compares after each answer its checks cache and the devices' health
// with those of a watcher built from that answer alone.
func TestCheckCacheIncrementalMatchesRebuild(t *testing.T) {
	const seeds, steps = 60, 300
	incremental, rebuilt := 0, 0
	for seed := uint64(1); seed <= seeds; seed++ {
		m := newPropCluster(seed)
		w, jw := propWatcher(m)
		devs := []scheduler.DeviceRef{{ID: "id-unknown", Name: "n9"}, {Name: "n7"}}
		for _, n := range propNodes {
			devs = append(devs, scheduler.DeviceRef{ID: "id-" + n, Name: n})
		}
		for step := range steps {
			nomad := false
			for range m.r.IntN(4) {
				nomad = m.step() || nomad
			}
			switch m.r.IntN(60) {
			case 0:
				m.restore()
			case 1:
				w.cs.reset() // the filter changed
			}
			if nomad || m.r.IntN(3) == 0 {
				// Without a change: the same answers again (the
				// queries woke for something they do not show).
				propPublish(w, m, false)
			}
			a, index := m.answer(), m.index
			before := w.cs.applied
			w.cs.merge(a, index)
			if w.cs.applied != before {
				incremental++
			} else {
				rebuilt++
			}

			full := newCheckCache()
			full.rebuild(slices.Clone(a), index)
			where := fmt.Sprintf("seed %d step %d (index %d, %d checks)", seed, step, index, len(a))
			if w.cs.index != full.index || w.cs.count != full.count {
				t.Fatalf("%s: index/count %d/%d, rebuilt %d/%d", where, w.cs.index, w.cs.count, full.index, full.count)
			}
			if got, want := cacheState(&w.cs), cacheState(&full); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: merged cache differs from a rebuild:\n got %+v\nwant %+v", where, got, want)
			}
			if m.r.IntN(3) == 0 {
				// Another list asked in between (a device, a part of
				// the list, the list with a duplicate): its own view,
				// its entries shared with the list's, views evicted.
				i := m.r.IntN(len(devs))
				var other []scheduler.DeviceRef
				switch m.r.IntN(3) {
				case 0:
					other = devs[i : i+1]
				case 1:
					other = devs[i:]
				default:
					other = append(slices.Clone(devs), devs[i])
				}
				w.healthLocked(jw, other)
			}
			fw, fjw := propWatcher(m)
			fw.cs = full
			fw.viewMin = 0
			got, want := w.healthLocked(jw, devs), fw.healthLocked(fjw, devs)
			if !reflect.DeepEqual(got, want) {
				for k := range want {
					if !reflect.DeepEqual(got[k], want[k]) {
						t.Errorf("%s: device %s: health from the merged caches\n %+v\nfrom a rebuild\n %+v", where, k, got[k], want[k])
					}
				}
				t.FailNow()
			}
		}
	}
	// Both paths were taken, often.
	if total := seeds * steps; incremental < total/4 || rebuilt < total/10 {
		t.Errorf("%d answers applied incrementally, %d rebuilt, of %d: the sequences do not exercise both paths", incremental, rebuilt, total)
	}
	t.Logf("%d answers applied incrementally, %d rebuilt", incremental, rebuilt)
}
