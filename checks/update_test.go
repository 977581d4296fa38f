package checks

import (
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/contract"
)

// A new version of the slot job: new allocations, the old instances'
// checks go away, the new ones appear and turn critical. The watcher sees
// the new version, the new allocation and its check.
func TestHealthFollowsNewJobVersion(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	for i := range f.checks {
		f.checks[i].ModifyIndex = 5
	}
	w := startFake(t, f, testConfig())
	if h := health(t, w)["id-1"]; h.Alloc == nil || h.Alloc.ID != "new-alloc" {
		t.Fatalf("before: %+v", h)
	}
	tags := []string{contract.SlotTag("blue")}
	f.update(func() {
		f.jobs["app-blue"] = jobView{Found: true, Latest: 2, Versions: map[uint64]string{1: "1.0.0+t1", 2: "2.0.0+t2"}, Services: []string{"app"}, JobModifyIndex: 20}
		f.allocs["app-blue"] = append(f.allocs["app-blue"],
			allocInfo{ID: "v2-alloc", NodeID: "id-1", ClientStatus: "pending", DesiredStatus: "run", JobVersion: 2, CreateIndex: 20})
		f.allocs["app-blue"][1].DesiredStatus = "stop"
	})
	f.update(func() {
		f.allocs["app-blue"][3].ClientStatus = "running"
		var keep []checkInfo
		for _, c := range f.checks {
			if c.CheckID != "c-new" && c.CheckID != "c-old" {
				keep = append(keep, c)
			}
		}
		f.checks = append(keep, checkInfo{Node: "n1", CheckID: "c-v2", Name: "fleetplan L3 application", Status: "critical",
			Output:    `HTTP GET x: 503 Output: {"status":"unhealthy","version":"2.0.0"}`,
			ServiceID: "_nomad-task-v2-alloc-app-app-http", ServiceName: "app", ServiceTags: tags, ModifyIndex: f.index + 1})
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		h := health(t, w)["id-1"]
		if h.Alloc != nil && h.Alloc.ID == "v2-alloc" && h.Alloc.Version == "2.0.0+t2" && h.Version == "2.0.0" && len(h.Checks) == 3 && h.Checks[2].Status == "critical" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new version not seen: %+v (alloc %+v)", h, h.Alloc)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Only the status changes now: the incremental path.
	f.update(func() {
		c := f.checkAt("c-v2")
		c.Status, c.ModifyIndex = "passing", f.index+1
	})
	for {
		h := health(t, w)["id-1"]
		if len(h.Checks) == 3 && h.Checks[2].Status == "passing" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status change not seen: %+v", h)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A job purged and registered again starts its versions at 0; the earlier
// incarnation's allocations (a newer version number) stay listed until
// Nomad collects them. They neither block the watcher ("the job read is
// behind") nor speak for the device.
func TestHealthIgnoresPurgedIncarnation(t *testing.T) {
	f := newFakeSource()
	fleet(f)
	f.jobs["app-blue"] = jobView{Found: true, Latest: 0, Versions: map[uint64]string{0: "1.0.0+t1"}, Services: []string{"app"}, CreateIndex: 8}
	f.allocs["app-blue"] = []allocInfo{
		{ID: "old-incarnation", NodeID: "id-1", ClientStatus: "failed", DesiredStatus: "run", JobVersion: 3, CreateIndex: 5},
		{ID: "new-alloc", NodeID: "id-1", ClientStatus: "running", DesiredStatus: "run", JobVersion: 0, CreateIndex: 9},
	}
	w := startFake(t, f, testConfig())
	h := health(t, w)["id-1"]
	if h.Alloc == nil || h.Alloc.ID != "new-alloc" || h.Alloc.Version != "1.0.0+t1" {
		t.Fatalf("alloc %+v, want new-alloc of version 1.0.0+t1", h.Alloc)
	}
	// Only the leftover on a device: no allocation of this job there.
	f.update(func() { f.allocs["app-blue"] = f.allocs["app-blue"][:1] })
	deadline := time.Now().Add(5 * time.Second)
	for health(t, w)["id-1"].Alloc != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the earlier incarnation's allocation speaks for the device: %+v", health(t, w)["id-1"].Alloc)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
