package scheduler

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unsafe"
)

// Tally counts devices by where they stand in a run. It is the one place
// that decides which device states count as attempted, failed or healthy:
// the gate, the failure analysis, the report, the state block and the live
// view all count with it.
//
// The state buckets (Pending ... Offline) are exclusive and add up to Total;
// Attempted and Failed are outcomes across them.
type Tally struct {
	Total       int `json:"total"`
	Pending     int `json:"pending"`
	Switching   int `json:"switching"`
	Verifying   int `json:"verifying"`
	Healthy     int `json:"healthy"` // healthy or caught-up
	FailedNow   int `json:"failed_now"`
	Quarantined int `json:"quarantined"`
	RollingBack int `json:"rolling_back"`
	RolledBack  int `json:"rolled_back"`
	Offline     int `json:"offline"` // skipped-offline

	// Attempted devices were switched to the candidate (not counting
	// devices still pending, switching or skipped offline); Failed those of
	// them that failed in this run (failed, quarantined, or rolled back
	// after failing).
	Attempted int `json:"attempted"`
	Failed    int `json:"failed"`
	// OfflineAfterSwitch are the offline devices that had been switched to
	// the candidate (I6: they count against their own threshold; a device
	// offline before its switch is only skipped).
	OfflineAfterSwitch int `json:"offline_after_switch"`
}

// FailedInRun reports whether the device failed in this run, whatever
// happened to it since (quarantine, rollback).
func (rec *DeviceRecord) FailedInRun() bool {
	switch rec.State {
	case DeviceFailed, DeviceQuarantined:
		return true
	case DeviceRollingBack, DeviceRolledBack:
		// Layer is set by a failing verdict (records written before the
		// Failed flag existed carry only that).
		return rec.Failed || rec.Layer > 0
	}
	return false
}

// TallyDevices counts recs.
func TallyDevices(recs []*DeviceRecord) Tally {
	var t Tally
	for _, rec := range recs {
		t.add(rec)
	}
	return t
}

// add counts one device.
func (t *Tally) add(rec *DeviceRecord) {
	t.Total++
	switch rec.State {
	case DevicePending:
		t.Pending++
	case DeviceSwitching:
		t.Switching++
	case DeviceVerifying:
		t.Verifying++
		t.Attempted++
	case DeviceHealthy, DeviceCaughtUp:
		t.Healthy++
		t.Attempted++
	case DeviceFailed:
		t.FailedNow++
	case DeviceQuarantined:
		t.Quarantined++
	case DeviceRollingBack:
		t.RollingBack++
	case DeviceRolledBack:
		t.RolledBack++
	case DeviceSkippedOffline:
		t.Offline++
		if rec.Attempted && !rec.SwitchedAt.IsZero() {
			t.OfflineAfterSwitch++
		}
	}
	switch {
	case rec.FailedInRun():
		t.Attempted++
		t.Failed++
	case (rec.State == DeviceRollingBack || rec.State == DeviceRolledBack) && !rec.SwitchedAt.IsZero():
		t.Attempted++
	}
}

// OnCandidate is how many counted devices run (or may run) the candidate.
func (t Tally) OnCandidate() int {
	return t.Switching + t.Verifying + t.Healthy + t.FailedNow + t.RollingBack
}

// FailurePercent is Failed as a percentage of Attempted (0 when none was).
func (t Tally) FailurePercent() float64 { return percent(t.Failed, t.Attempted) }

// StageTally counts the devices of one stage.
func (r *Rollout) StageTally(stage int) Tally {
	var t Tally
	for _, rec := range sortedOrder(r.Devices) {
		if rec.Stage == stage {
			t.add(rec)
		}
	}
	return t
}

// FleetTally counts every device that belongs to a stage.
func (r *Rollout) FleetTally() Tally {
	var t Tally
	for _, rec := range r.Devices {
		if rec.Stage >= 0 {
			t.add(rec)
		}
	}
	return t
}

// StageDevices returns the stage's devices sorted by name.
func (r *Rollout) StageDevices(stage int) []*DeviceRecord {
	order := sortedOrder(r.Devices)
	n := 0
	for _, rec := range order {
		if rec.Stage == stage {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]*DeviceRecord, 0, n)
	for _, rec := range order {
		if rec.Stage == stage {
			out = append(out, rec)
		}
	}
	return out
}

// SortedDevices returns every device record sorted by name.
func (r *Rollout) SortedDevices() []*DeviceRecord {
	return slices.Clone(sortedOrder(r.Devices))
}

func sortRecords(recs []*DeviceRecord) {
	slices.SortFunc(recs, func(a, b *DeviceRecord) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// sortedOrder returns the records of m sorted by name and ID; the caller
// must not modify the slice. The controller asks for the order of its run's
// records several times per health sample while the set of records and
// their names stay the same, so the last orders are kept and reused while
// they are exact: the same records under the same IDs, with the same names
// (checked in one pass over the kept order, far cheaper than sorting a
// large fleet again).
func sortedOrder(m map[string]*DeviceRecord) []*DeviceRecord {
	if len(m) < sortCacheMin {
		out := make([]*DeviceRecord, 0, len(m))
		for _, rec := range m {
			out = append(out, rec)
		}
		sortRecords(out)
		return out
	}
	key := reflect.ValueOf(m).UnsafePointer()
	orders.mu.Lock()
	defer orders.mu.Unlock()
	for i := range orders.entries {
		e := &orders.entries[i]
		if e.key == key && e.valid(m) {
			return e.recs
		}
	}
	e := &orders.entries[orders.next]
	orders.next = (orders.next + 1) % len(orders.entries)
	e.key = key
	e.recs = make([]*DeviceRecord, 0, len(m))
	for _, rec := range m {
		e.recs = append(e.recs, rec)
	}
	sortRecords(e.recs)
	e.refs = make([]DeviceRef, len(e.recs))
	for i, rec := range e.recs {
		e.refs[i] = rec.DeviceRef
		if i > 0 && rec.ID == e.refs[i-1].ID {
			// Two records with one ID (one record under two keys sorts
			// next to itself): valid() could not tell m's other keys,
			// do not keep this order.
			e.key = nil
		}
	}
	return e.recs
}

// sortCacheMin: smaller sets of records are sorted every time.
const sortCacheMin = 256

var orders struct {
	mu      sync.Mutex
	entries [4]orderEntry
	next    int
}

// orderEntry is one kept order: the records sorted, and the ID and name
// each had then (its key in the map is its ID).
type orderEntry struct {
	key  unsafe.Pointer // the map's identity: a hint, valid() decides
	recs []*DeviceRecord
	refs []DeviceRef
}

// valid reports whether the kept order is still exactly m's: as many
// records, and every kept record still has the ID and the name it had and
// is m's record under that ID. The kept IDs are distinct (an order with
// two records of one ID is not kept), so m's keys are exactly the kept
// IDs and m holds exactly the kept records: one map lookup per record, in
// the kept order.
func (e *orderEntry) valid(m map[string]*DeviceRecord) bool {
	if len(e.recs) != len(m) {
		return false
	}
	for i, rec := range e.recs {
		ref := &e.refs[i]
		if rec.ID != ref.ID || rec.Name != ref.Name || m[ref.ID] != rec {
			return false
		}
	}
	return true
}

// CanarySummary describes the canary's health in one line (what an
// approver saw).
func CanarySummary(r *Rollout) string {
	t := r.StageTally(0)
	parts := []string{fmt.Sprintf("%d/%d canary devices healthy", t.Healthy, t.Total)}
	for _, n := range []struct {
		count int
		state DeviceState
	}{{t.FailedNow, DeviceFailed}, {t.Quarantined, DeviceQuarantined}, {t.Offline, DeviceSkippedOffline}} {
		if n.count > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n.count, n.state))
		}
	}
	return strings.Join(parts, ", ")
}

func describePosition(r *Rollout) string {
	switch r.Phase {
	case PhaseCanary, PhaseWave:
		if r.Stage < len(r.Stages) {
			return fmt.Sprintf("%s (%s, %s)", r.Phase, r.Stages[r.Stage].Name, r.Step)
		}
	}
	return string(r.Phase)
}

func percent(part, whole int) float64 {
	if whole == 0 {
		return 0
	}
	return float64(part) * 100 / float64(whole)
}

func slotName(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func versionName(v string) string {
	if v == "" {
		return "no version (first install removed)"
	}
	return v
}
