package scheduler

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The planner sorts each stage with integer keys of the names; the order
// must be exactly the order of (class, name, ID), whatever the names look
// like: shared prefixes, different lengths, bytes that sort below the
// padding, equal names with different IDs.
func TestPlanStageOrderMatchesStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	alphabet := []string{"", "\x00", "\x01", "-", "0", "1", "9", "a", "z", "\xff", "edge-", "edge-berlin-0", "edge-berlin-00"}
	var devices []Device
	for i := range 3000 {
		class := []string{"jetson", "rpi", "", "gateway"}[r.IntN(4)]
		name := class
		for range r.IntN(4) {
			name += alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(5) > 0 {
			name += fmt.Sprint(r.IntN(200))
		}
		devices = append(devices, Device{ID: fmt.Sprintf("id-%05d", i), Name: name, Class: class, Status: StatusOK})
	}
	plan, err := PlanRollout(testPolicy("order", 2, 1, 10, 25, 50, 100), devices)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, st := range plan.Stages {
		total += len(st.Devices)
		if !slices.IsSortedFunc(st.Devices, func(a, b PlannedDevice) int {
			return cmpDevice(a.Class, a.Name, a.ID, b.Class, b.Name, b.ID)
		}) {
			t.Fatalf("%s is not sorted by class, name and ID", st.Name)
		}
	}
	if total != len(devices) {
		t.Fatalf("the stages hold %d devices, want %d", total, len(devices))
	}
}

func TestNameKeyOrder(t *testing.T) {
	names := []string{"", "a", "a\x00", "a\x00\x00", "ab", "abcdefgh", "abcdefghi", "abcdefgh\x00", "b", "\xff\xff", "x-1", "x-10", "x-2"}
	for _, from := range []int{0, 1, 2} {
		for _, a := range names {
			for _, b := range names {
				if len(a) < from || len(b) < from || a[:from] != b[:from] {
					continue
				}
				ka, kb := nameKey(a, from), nameKey(b, from)
				if ka != kb && (ka < kb) != (strings.Compare(a, b) < 0) {
					t.Errorf("from %d: keys of %q and %q order them wrongly", from, a, b)
				}
			}
		}
	}
}

// firstDuplicate reports what a scan with a set of seen IDs stops at.
func TestFirstDuplicate(t *testing.T) {
	for _, tc := range []struct {
		ids  []string
		want int
	}{
		{[]string{"a", "b", "c"}, -1},
		{[]string{"a", "b", "a"}, 2},
		{[]string{"a", "b", "b", "a"}, 2},
		{[]string{"c", "a", "b", "a", "c"}, 3},
		{[]string{"x", "x", "x"}, 1},
	} {
		devices := make([]Device, len(tc.ids))
		hashes := make([]uint64, len(tc.ids))
		for i, id := range tc.ids {
			devices[i].ID = id
			hashes[i] = 42 // all collide: the IDs must be compared
		}
		if got := firstDuplicate(devices, hashes); got != tc.want {
			t.Errorf("%v with colliding hashes: %d, want %d", tc.ids, got, tc.want)
		}
		for i, id := range tc.ids {
			hashes[i] = mix64(fnvString(fnvOffset64, id))
		}
		if got := firstDuplicate(devices, hashes); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.ids, got, tc.want)
		}
	}
}
