package scheduler

import (
	"fmt"
	"slices"
	"testing"
)

// The kept order of a run's records must follow every change that moves
// it: a record added, one replaced by another under the same count, a
// rename, a new map; and callers may change what SortedDevices returns.
func TestSortedDevicesFollowsChanges(t *testing.T) {
	r := &Rollout{Devices: map[string]*DeviceRecord{}}
	for i := range 2 * sortCacheMin {
		id := fmt.Sprintf("id-%04d", i)
		r.Devices[id] = &DeviceRecord{DeviceRef: DeviceRef{ID: id, Name: fmt.Sprintf("dev-%04d", (i*7919)%(2*sortCacheMin))}, Stage: i % 3}
	}
	check := func(what string) {
		t.Helper()
		want := make([]*DeviceRecord, 0, len(r.Devices))
		for _, rec := range r.Devices {
			want = append(want, rec)
		}
		sortRecords(want)
		if got := r.SortedDevices(); !slices.Equal(got, want) {
			t.Fatalf("%s: SortedDevices is not the sorted records", what)
		}
		for stage := range 3 {
			var ws []*DeviceRecord
			for _, rec := range want {
				if rec.Stage == stage {
					ws = append(ws, rec)
				}
			}
			if got := r.StageDevices(stage); !slices.Equal(got, ws) {
				t.Fatalf("%s: StageDevices(%d) is not the stage's sorted records", what, stage)
			}
		}
	}
	check("first")
	check("again (kept)")
	got := r.SortedDevices()
	got[0], got[1] = got[1], got[0]
	check("after a caller changed the returned slice")

	r.Devices["id-new"] = &DeviceRecord{DeviceRef: DeviceRef{ID: "id-new", Name: "aaa"}}
	check("after an added record")

	delete(r.Devices, "id-0003")
	r.Devices["id-0003"] = &DeviceRecord{DeviceRef: DeviceRef{ID: "id-0003", Name: "zzz"}, Stage: 1}
	check("after a record replaced by another (same count)")

	r.Devices["id-0005"].Name = "0-renamed"
	check("after a rename")

	r.Devices["id-0007"].Stage = 2
	check("after a stage change")

	cp := *r.Devices["id-0011"]
	r.Devices["id-0011"] = &cp
	check("after a record replaced by its copy (same ID and name)")

	copied := make(map[string]*DeviceRecord, len(r.Devices))
	for k, v := range r.Devices {
		copied[k] = v
	}
	delete(copied, "id-0009")
	r.Devices = copied
	check("on another map")
}
