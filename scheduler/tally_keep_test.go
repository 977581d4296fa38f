package scheduler

import (
	"fmt"
	"slices"
	"testing"
)

// A record under two keys, then one of the keys given to another record
// (same count): the kept order must not be reused.
func TestSortedDevicesRecordUnderTwoKeys(t *testing.T) {
	m := map[string]*DeviceRecord{}
	for i := range 2 * sortCacheMin {
		id := fmt.Sprintf("id-%04d", i)
		m[id] = &DeviceRecord{DeviceRef: DeviceRef{ID: id, Name: fmt.Sprintf("dev-%04d", i)}}
	}
	m["alias"] = m["id-0001"]
	r := &Rollout{Devices: m}
	_ = r.SortedDevices()
	_ = r.SortedDevices()
	other := &DeviceRecord{DeviceRef: DeviceRef{ID: "alias", Name: "zzz"}}
	m["alias"] = other
	got := r.SortedDevices()
	if len(got) != len(m) || got[len(got)-1] != other {
		t.Fatalf("the order kept while a record was under two keys was reused: last %+v, want %+v", got[len(got)-1].DeviceRef, other.DeviceRef)
	}
	want := make([]*DeviceRecord, 0, len(m))
	for _, rec := range m {
		want = append(want, rec)
	}
	sortRecords(want)
	if !slices.Equal(got, want) {
		t.Fatal("SortedDevices is not the sorted records")
	}
}
