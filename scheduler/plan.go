package scheduler

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Plan is the wave plan of one rollout: which devices every stage (the canary,
// then each wave) moves to the candidate, with per-class counts. It is what
// `fleetplan plan` prints and what the rollout state machine executes.
//
// All percentages are shares of the deployable fleet: the devices given to
// PlanRollout minus the Excluded ones (quarantined devices and devices with an
// unresolved registry discrepancy). FleetTotal still counts every device given.
type Plan struct {
	// Rollout is the policy's rollout name; it seeds the stable assignment.
	Rollout string `json:"rollout"`
	// FleetTotal is the number of devices that matched the selector,
	// excluded ones included.
	FleetTotal int `json:"fleet_total"`
	// Deployable is FleetTotal minus len(Excluded): the base of every
	// percentage in the plan. Offline devices are deployable (they are
	// planned, skipped, and caught up later).
	Deployable int            `json:"deployable"`
	Stages     []PlannedStage `json:"stages"`
	// Excluded lists the devices no stage contains, sorted by class, name, ID.
	Excluded []ExcludedDevice `json:"excluded"`
	// Warnings are things an operator should read before applying the plan;
	// none of them stops the rollout.
	Warnings []string `json:"warnings"`
	// PerClassTotal is the number of deployable devices of every class. A class
	// whose devices are all excluded is listed with 0.
	PerClassTotal map[string]int `json:"per_class_total"`
}

// PlannedStage is the canary or one wave.
type PlannedStage struct {
	Name   string `json:"name"`
	Canary bool   `json:"canary"`
	// Percent is the cumulative share of the deployable fleet the policy asks
	// for once this stage is through.
	Percent float64 `json:"percent"`
	// ActualPercent is the cumulative share the plan reaches after this stage
	// (CumulativeDevices of Deployable); per-class rounding up and the
	// canary's min_per_class make it at least Percent, except where a class
	// has run out of devices.
	ActualPercent float64 `json:"actual_percent"`
	// Soak is marshalled as nanoseconds.
	Soak time.Duration `json:"soak"`
	// Devices are the devices new in this stage (not those of earlier
	// stages), sorted by class, name, ID.
	Devices []PlannedDevice `json:"devices"`
	// PerClass counts Devices by class; every class of PerClassTotal is a key.
	PerClass map[string]int `json:"per_class"`
	// Offline counts the Devices that are offline and will be skipped.
	Offline int `json:"offline"`
	// CumulativeDevices counts the devices of this stage and all earlier ones.
	CumulativeDevices int `json:"cumulative_devices"`
}

// PlannedDevice is one device of a stage.
type PlannedDevice struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Class string `json:"class"`
	// Offline devices keep their place in the plan and are skipped when the
	// stage runs (never counted as failed); they are caught up later.
	Offline bool `json:"offline"`
}

// ExcludedDevice is a device no stage contains.
type ExcludedDevice struct {
	ID     string         `json:"id"`
	Name   string         `json:"name"`
	Class  string         `json:"class"`
	Status RegistryStatus `json:"status"`
	Reason string         `json:"reason"`
}

// MaxCanaryPercent is the largest share of the fleet a canary should have;
// the planner warns when rounding and min_per_class make it larger.
const MaxCanaryPercent = 5

// PlanRollout splits the fleet into the policy's stages.
//
// devices is the fleet: every device that matched the policy's selector, as
// the registry sees it. Devices that are not Deployable (quarantined, or with
// an unresolved registry discrepancy) are listed in Plan.Excluded and are in
// no stage; every percentage is a share of the remaining, deployable fleet.
//
// Each stage is stratified over node classes: after stage k every class has
// ceil(Percent_k% of its deployable devices) in the candidate (never more
// than the class, exactly all of it at 100%), and the canary has at least
// min(Canary.MinPerClass, class size) devices of every class (MinPerClass
// below 1 counts as 1: every class is in the canary). If all of a class's
// canary devices would be offline, the canary takes that class's next online
// devices too, so that the canary does test every class that has one online.
// A stage that would add no device while some are left takes one device
// from the class furthest behind, so no stage is empty unless the fleet is
// used up.
//
// Within a class, devices are taken in the order of a hash of the rollout
// name and the device ID, so the assignment is stable: adding or removing a
// device moves at most about one other device per stage boundary.
//
// Offline devices keep their place and are marked Offline. The result is
// deterministic. PlanRollout returns an error for a nil policy, an empty
// fleet, duplicate device IDs, or stage percentages that are not in (0, 100]
// and non-decreasing.
func PlanRollout(p *Policy, devices []Device) (*Plan, error) {
	if p == nil {
		return nil, errors.New("plan: no policy")
	}
	if len(devices) == 0 {
		return nil, fmt.Errorf("plan rollout %q: the fleet is empty: no device matched the selector", p.Name)
	}
	specs := p.Stages()
	if err := checkStageSpecs(specs); err != nil {
		return nil, fmt.Errorf("plan rollout %q: %w", p.Name, err)
	}

	plan := &Plan{
		Rollout:       p.Name,
		FleetTotal:    len(devices),
		Stages:        make([]PlannedStage, 0, len(specs)),
		Excluded:      []ExcludedDevice{},
		Warnings:      []string{},
		PerClassTotal: map[string]int{},
	}

	// Split the fleet into excluded devices and per-class hash-ordered lists.
	seed := fnvString(fnvOffset64, p.Name)
	seed = fnvByte(seed, 0)
	hashes := make([]uint64, len(devices))
	for i := range devices {
		hashes[i] = mix64(fnvString(seed, devices[i].ID))
	}
	if i := firstDuplicate(devices, hashes); i >= 0 {
		return nil, fmt.Errorf("plan rollout %q: device ID %q appears more than once in the fleet", p.Name, devices[i].ID)
	}
	byClass := map[string][]planEntry{}
	excludedPerClass := map[string]int{}
	ineligible := 0
	// One pass in the fleet's order (memory order: a large fleet does not
	// fit in the caches) gathers everything later steps need per device.
	// Fleets have few classes: they are found by a short scan, not a
	// lookup per device.
	var accs []classAcc
	accOf := map[string]int{}
	classOf := make([]int32, len(devices))
	for i := range devices {
		classOf[i] = -1
		d := &devices[i]
		if ok, reason := d.Deployable(); !ok {
			plan.Excluded = append(plan.Excluded, ExcludedDevice{
				ID: d.ID, Name: d.Name, Class: d.Class, Status: d.Status, Reason: reason,
			})
			excludedPerClass[d.Class]++
			continue
		}
		if d.Eligibility == "ineligible" {
			ineligible++
		}
		j := -1
		if len(accs) <= 8 {
			for k := range accs {
				if accs[k].name == d.Class {
					j = k
					break
				}
			}
		} else if k, ok := accOf[d.Class]; ok {
			j = k
		}
		if j < 0 {
			j = len(accs)
			accOf[d.Class] = j
			accs = append(accs, classAcc{name: d.Class, first: d.Name, lcp: len(d.Name)})
		}
		a := &accs[j]
		a.list = append(a.list, planEntry{hash: hashes[i], idx: int32(i), offline: d.Status == StatusOffline})
		a.lcp = commonPrefix(a.first, d.Name, a.lcp)
		classOf[i] = int32(j)
	}
	// Each device's sort key within its stage: its name after its class's
	// common prefix.
	keys := hashes // the hashes are in the entries now; reuse the array
	for i := range devices {
		if j := classOf[i]; j >= 0 {
			keys[i] = nameKey(devices[i].Name, accs[j].lcp)
		}
	}
	for _, a := range accs {
		byClass[a.name] = a.list
	}

	classes := make([]string, 0, len(byClass)+len(excludedPerClass))
	for c := range byClass {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for c, n := range excludedPerClass {
		if _, ok := byClass[c]; !ok {
			plan.PerClassTotal[c] = 0
			plan.warnf("class %s: all %d devices are excluded; the rollout does not cover this class", className(c), n)
		}
	}
	// Warnings about classes are emitted in class order below; sort the few
	// emitted above (map order) now.
	slices.Sort(plan.Warnings)

	states := make([]classState, len(classes))
	deployable := 0
	offlineTotal := 0
	for i, c := range classes {
		es := byClass[c]
		slices.SortFunc(es, func(a, b planEntry) int {
			if r := cmp.Compare(a.hash, b.hash); r != 0 {
				return r
			}
			return strings.Compare(devices[a.idx].ID, devices[b.idx].ID)
		})
		online := 0
		for _, e := range es {
			if !e.offline {
				online++
			}
		}
		states[i] = classState{name: c, order: es, online: online}
		plan.PerClassTotal[c] = len(es)
		deployable += len(es)
		offlineTotal += len(es) - online
	}
	plan.Deployable = deployable
	slices.SortFunc(plan.Excluded, func(a, b ExcludedDevice) int {
		return cmpDevice(a.Class, a.Name, a.ID, b.Class, b.Name, b.ID)
	})

	if deployable == 0 {
		plan.warnf("no deployable device: all %d devices of the fleet are excluded", len(devices))
	}
	minPer := max(p.Canary.MinPerClass, 1)
	for _, st := range states {
		if n := len(st.order); n < minPer {
			plan.warnf("class %s has %d deployable device(s), fewer than the canary's min_per_class %d: the canary takes all of them",
				className(st.name), n, minPer)
		}
	}
	if ineligible > 0 {
		plan.warnf("%d device(s) are ineligible for scheduling in Nomad: the candidate will not be placed on them until they are eligible again", ineligible)
	}
	if limit := p.Offline.MaxOfflinePercent; limit > 0 && deployable > 0 {
		if pct := percentOf(offlineTotal, deployable); pct > limit {
			plan.warnf("%d of %d deployable devices are offline (%s%%), more than offline.max_offline_percent %s%%",
				offlineTotal, deployable, fmtPct(pct), fmtPct(limit))
		}
	}

	cumulative := 0
	targets := make([]int, len(states))
	var scratch []stageEntry
	for _, spec := range specs {
		for i := range states {
			st := &states[i]
			n := len(st.order)
			t := cumulativeTarget(n, spec.Percent)
			if spec.Canary {
				if need := min(minPer, n); t < need {
					t = need
				}
				// Make sure the canary tests the class on devices that answer.
				needOnline := min(minPer, st.online)
				got := 0
				for _, e := range st.order[:t] {
					if !e.offline {
						got++
					}
				}
				for got < needOnline && t < n {
					if !st.order[t].offline {
						got++
					}
					t++
				}
			}
			targets[i] = max(t, st.done)
		}
		added := 0
		for i := range states {
			added += targets[i] - states[i].done
		}
		if added == 0 && cumulative < deployable && !abGroupB(p, spec) {
			// Rounding left the stage empty: take one device from the class
			// that is furthest behind (never into an a-b's group B, whose
			// share per class is the policy's).
			best := -1
			for i := range states {
				st := &states[i]
				if st.done >= len(st.order) {
					continue
				}
				if best < 0 || behind(st, &states[best]) {
					best = i
				}
			}
			targets[best]++
			added = 1
			plan.warnf("%s: %s%% of the fleet adds no device after rounding; planned 1 device so the stage is not empty",
				spec.Name, fmtPct(spec.Percent))
		}

		stage := PlannedStage{
			Name:     spec.Name,
			Canary:   spec.Canary,
			Percent:  spec.Percent,
			Soak:     spec.Soak,
			Devices:  make([]PlannedDevice, 0, added),
			PerClass: make(map[string]int, len(plan.PerClassTotal)),
		}
		for c := range plan.PerClassTotal {
			stage.PerClass[c] = 0
		}
		// States are in class order, so sorting each class's share by
		// name and ID sorts the stage by class, name and ID.
		for i := range states {
			st := &states[i]
			scratch = scratch[:0]
			for _, e := range st.order[st.done:targets[i]] {
				scratch = append(scratch, stageEntry{key: keys[e.idx], idx: e.idx, offline: e.offline})
			}
			slices.SortFunc(scratch, func(a, b stageEntry) int {
				if a.key != b.key {
					return cmp.Compare(a.key, b.key)
				}
				da, db := &devices[a.idx], &devices[b.idx]
				if r := strings.Compare(da.Name, db.Name); r != 0 {
					return r
				}
				return strings.Compare(da.ID, db.ID)
			})
			for _, e := range scratch {
				d := &devices[e.idx]
				stage.Devices = append(stage.Devices, PlannedDevice{ID: d.ID, Name: d.Name, Class: d.Class, Offline: e.offline})
				if e.offline {
					stage.Offline++
				}
			}
			stage.PerClass[st.name] = targets[i] - st.done
			st.done = targets[i]
		}
		cumulative += added
		stage.CumulativeDevices = cumulative
		if deployable > 0 {
			stage.ActualPercent = percentOf(cumulative, deployable)
		}

		if added == 0 && deployable > 0 {
			plan.warnf("%s adds no device: every deployable device is already in an earlier stage", spec.Name)
		}
		// The canary is 1-5 % of the fleet; per-class rounding up and
		// min_per_class can make it larger on small fleets or small classes.
		if spec.Canary && deployable > 0 {
			if actual := math.Round(stage.ActualPercent*100) / 100; actual > max(spec.Percent, MaxCanaryPercent) {
				plan.warnf("canary: %d device(s), %s%% of the deployable fleet (the policy asks %s%%), to have at least %d device(s) of every class",
					added, fmtPct(stage.ActualPercent), fmtPct(spec.Percent), minPer)
			}
		}
		if spec.Canary {
			for i := range states {
				st := &states[i]
				if len(st.order) > 0 && st.online == 0 {
					plan.warnf("canary: every device of class %s is offline; the canary does not test this class", className(st.name))
				}
			}
		}
		if limit := p.Offline.MaxOfflinePercent; limit > 0 && added > 0 {
			if pct := percentOf(stage.Offline, added); pct > limit {
				plan.warnf("%s: %d of its %d devices are offline (%s%%), more than offline.max_offline_percent %s%%",
					spec.Name, stage.Offline, added, fmtPct(pct), fmtPct(limit))
			}
		}
		plan.Stages = append(plan.Stages, stage)
	}

	if p.Strategy == StrategyAB {
		abPlanWarnings(plan)
	}
	if last := specs[len(specs)-1]; last.Percent < 100 && cumulative < deployable && p.Strategy != StrategyAB {
		plan.warnf("the last stage (%s) reaches %s%%: %d deployable device(s) stay on the current version",
			last.Name, fmtPct(last.Percent), deployable-cumulative)
	}
	if p.Strategy == StrategyRollingUpdate {
		rollingBatches(p, plan)
	}
	return plan, nil
}

// planEntry is one deployable device in its class's rollout order.
type planEntry struct {
	hash    uint64
	idx     int32 // index into the devices given to PlanRollout
	offline bool
}

// classState tracks one class while stages are planned.
type classState struct {
	name   string
	order  []planEntry // rollout order: by hash, then ID
	online int
	done   int // devices of order in earlier stages
}

// classAcc gathers one class's deployable devices in the first pass.
type classAcc struct {
	name  string
	list  []planEntry
	first string // the first device's name
	lcp   int    // the prefix length every name so far shares with first
}

// commonPrefix is the length of the prefix a and b share, at most n.
func commonPrefix(a, b string, n int) int {
	n = min(n, len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// stageEntry is one device of a stage while the stage is sorted by name:
// key orders by the 8 bytes after the class's common name prefix, so most
// comparisons need no string.
type stageEntry struct {
	key     uint64
	idx     int32
	offline bool
}

// nameKey is the 8 bytes of name from offset from on, big-endian and padded
// with zeros: for names sharing their first from bytes, a different key
// orders them as their strings (equal keys need the strings).
func nameKey(name string, from int) uint64 {
	var k uint64
	for i := range 8 {
		k <<= 8
		if j := from + i; j < len(name) {
			k |= uint64(name[j])
		}
	}
	return k
}

// firstDuplicate returns the index of the first device whose ID an earlier
// device has (what a scan with a set of seen IDs would stop at), or -1.
// hashes are the devices' ID hashes: the set is an open-addressing table of
// device indexes keyed by them, and only equal hashes compare IDs.
func firstDuplicate(devices []Device, hashes []uint64) int {
	size := 16
	for size < 2*len(hashes) {
		size *= 2
	}
	mask := uint64(size - 1)
	table := make([]int32, size) // device index + 1; 0 is empty
	for i, h := range hashes {
		for slot := h & mask; ; slot = (slot + 1) & mask {
			j := table[slot]
			if j == 0 {
				table[slot] = int32(i + 1)
				break
			}
			if hashes[j-1] == h && devices[j-1].ID == devices[i].ID {
				return i
			}
		}
	}
	return -1
}

// behind reports whether class a has moved a smaller share of its devices
// than class b (ties: more devices left, then class name).
func behind(a, b *classState) bool {
	// a.done/len(a) < b.done/len(b), in integers.
	l, r := a.done*len(b.order), b.done*len(a.order)
	if l != r {
		return l < r
	}
	if ra, rb := len(a.order)-a.done, len(b.order)-b.done; ra != rb {
		return ra > rb
	}
	return a.name < b.name
}

// cumulativeTarget is how many of n devices a cumulative percentage covers:
// rounded up, so every class gets at least its share, never more than n, and
// exactly n at 100%.
func cumulativeTarget(n int, pct float64) int {
	if pct >= 100 {
		return n
	}
	// The tolerance keeps float noise (n*pct/100 = 33300.000000000004) from
	// rounding up a whole device; real fractional parts are far larger.
	t := int(math.Ceil(float64(n)*pct/100 - 1e-6))
	return min(max(t, 0), n)
}

func checkStageSpecs(specs []StageSpec) error {
	prev := 0.0
	for _, s := range specs {
		if math.IsNaN(s.Percent) || s.Percent <= 0 || s.Percent > 100 {
			return fmt.Errorf("%s: percent %s is not in (0, 100]", s.Name, fmtPct(s.Percent))
		}
		if s.Percent < prev {
			return fmt.Errorf("%s: percent %s is below the previous stage's %s; percentages are cumulative",
				s.Name, fmtPct(s.Percent), fmtPct(prev))
		}
		prev = s.Percent
	}
	return nil
}

func (p *Plan) warnf(format string, args ...any) {
	p.Warnings = append(p.Warnings, fmt.Sprintf(format, args...))
}

func cmpDevice(ac, an, aid, bc, bn, bid string) int {
	if r := strings.Compare(ac, bc); r != 0 {
		return r
	}
	if r := strings.Compare(an, bn); r != 0 {
		return r
	}
	return strings.Compare(aid, bid)
}

func className(c string) string {
	if c == "" {
		return "(none)"
	}
	return c
}

func percentOf(part, whole int) float64 {
	return float64(part) * 100 / float64(whole)
}

// fmtPct prints a percentage with at most two decimals.
func fmtPct(f float64) string {
	return strconv.FormatFloat(math.Round(f*100)/100, 'f', -1, 64)
}

// FNV-1a, inlined so hashing a string does not allocate, followed by the
// splitmix64 finaliser so that IDs differing only in their last characters
// (dev-0001, dev-0002) still land far apart in the order.
const (
	fnvOffset64 = 14695981039164346656
	fnvPrime64  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

func fnvByte(h uint64, b byte) uint64 {
	h ^= uint64(b)
	h *= fnvPrime64
	return h
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
