package checks

import (
	"maps"

	"github.com/fleetplan/fleetplan/scheduler"
)

// healthView is the last answer of Health for one list of devices (the
// controller asks for the same wave's devices at every sample): the
// devices' cache entries by position (its own, in one array: not those of
// jobWatch.cache, which short lists use) and the answer's map. Asked
// again for the same list, Health checks each entry when the caches
// changed (not at all when nothing did: a wakeup), recomputes the devices
// whose inputs moved, updates only their places in the map, and returns a
// copy of the map (a copy of its memory, no hashing): no map lookup by
// device, no map built again.
type healthView struct {
	// refs are the list's devices (their IDs and names decide).
	refs []scheduler.DeviceRef
	// entries are the devices' cache entries.
	entries []cachedHealth
	// out holds exactly the devices' keys (deviceKey) -> entries[i].h;
	// never handed out.
	out map[string]scheduler.DeviceHealth
	// The caches' generations at which every entry was last checked.
	nodesGen, allocGen, epoch, checksGen uint64
	// used orders the views for eviction.
	used uint64
}

// Views kept per slot job (each holds a map of its devices): the wave's
// list and one other (the catch-up's, a recheck's).
const maxHealthViews = 2

// defaultViewMin: shorter lists are answered device by device from the
// cache (a view would cost more than it saves).
const defaultViewMin = 256

// same reports whether the view is of exactly this list.
func (v *healthView) same(devices []scheduler.DeviceRef) bool {
	if len(v.refs) != len(devices) {
		return false
	}
	for i := range devices {
		// Usually the same strings (the records'): compared by pointer.
		if devices[i].ID != v.refs[i].ID || devices[i].Name != v.refs[i].Name {
			return false
		}
	}
	return true
}

// deviceKey is the key of a device in Health's answer: its ID, its name
// when it has none.
func deviceKey(d scheduler.DeviceRef) string {
	if d.ID == "" {
		return d.Name
	}
	return d.ID
}

// viewHealthLocked answers healthLocked for a list long enough to keep a
// view of; ok is false when the list cannot have one (two devices with
// one key).
func (w *Watcher) viewHealthLocked(jw *jobWatch, devices []scheduler.DeviceRef) (map[string]scheduler.DeviceHealth, bool) {
	w.viewClock++
	for _, v := range jw.views {
		if v.same(devices) {
			v.used = w.viewClock
			w.refreshViewLocked(jw, v)
			return maps.Clone(v.out), true
		}
	}
	v := &healthView{
		refs:    make([]scheduler.DeviceRef, len(devices)),
		entries: make([]cachedHealth, len(devices)),
		out:     make(map[string]scheduler.DeviceHealth, len(devices)),
		used:    w.viewClock,
	}
	slab := &healthSlab{}
	for i, d := range devices {
		slab.left = len(devices) - i
		key := deviceKey(d)
		c := &v.entries[i]
		w.fillLocked(jw, d, c, slab)
		v.refs[i] = scheduler.DeviceRef{ID: d.ID, Name: d.Name}
		v.out[key] = c.h
		if len(v.out) != i+1 {
			// Two devices with one key (the answer holds the last
			// one's health): no view, the list is answered by device
			// from the cache.
			return nil, false
		}
	}
	v.nodesGen, v.allocGen, v.epoch, v.checksGen = w.nodesGen, w.allocGen, w.cs.epoch, w.cs.gen
	if len(jw.views) < maxHealthViews {
		jw.views = append(jw.views, v)
	} else {
		oldest := 0
		for i := range jw.views {
			if jw.views[i].used < jw.views[oldest].used {
				oldest = i
			}
		}
		jw.views[oldest] = v
	}
	return maps.Clone(v.out), true
}

// refreshViewLocked brings a view's entries and map up to date with the
// caches: nothing to do when no generation moved; else every entry is
// checked (a few comparisons each) and those computed from older data are
// computed again.
func (w *Watcher) refreshViewLocked(jw *jobWatch, v *healthView) {
	if v.nodesGen == w.nodesGen && v.allocGen == w.allocGen && v.epoch == w.cs.epoch && v.checksGen == w.cs.gen {
		return
	}
	for i := range v.entries {
		if c := &v.entries[i]; !w.validLocked(c) {
			w.fillLocked(jw, v.refs[i], c, nil)
			v.out[deviceKey(v.refs[i])] = c.h
		}
	}
	v.nodesGen, v.allocGen, v.epoch, v.checksGen = w.nodesGen, w.allocGen, w.cs.epoch, w.cs.gen
}

// healthSlab hands out what many devices' health computed at once (a
// view built) needs, their allocations and check lists, from a few
// arrays instead of one allocation each (fewer objects for the allocator
// and the garbage collector). A chunk of allocations or check
// lists stays in memory while one device's health still uses it: at most
// about what one computation of every device took. A nil slab allocates
// each one.
type healthSlab struct {
	// left is the number of devices still to compute: it sizes the
	// next chunks.
	left   int
	allocs []scheduler.AllocHealth
	checks []scheduler.CheckResult
}

// slabChunk bounds a chunk, in devices.
const slabChunk = 1024

func (s *healthSlab) chunk() int { return max(1, min(s.left, slabChunk)) }

// alloc is a new allocation's health.
func (s *healthSlab) alloc() *scheduler.AllocHealth {
	if s == nil {
		return &scheduler.AllocHealth{}
	}
	if len(s.allocs) == 0 {
		s.allocs = make([]scheduler.AllocHealth, s.chunk())
	}
	a := &s.allocs[0]
	s.allocs = s.allocs[1:]
	return a
}

// checkList is an empty list of capacity n (appending past n does not
// reach a neighbour's list).
func (s *healthSlab) checkList(n int) []scheduler.CheckResult {
	if s == nil {
		return make([]scheduler.CheckResult, 0, n)
	}
	if len(s.checks) < n {
		s.checks = make([]scheduler.CheckResult, max(n, 4*s.chunk()))
	}
	out := s.checks[:0:n]
	s.checks = s.checks[n:]
	return out
}
