package simfleet

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

var t0 = time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestClockFiresTimersInOrder(t *testing.T) {
	c := NewClock(t0)
	var got []time.Duration
	for _, d := range []time.Duration{3, 1, 2} {
		c.At(t0.Add(d*time.Second), func() { got = append(got, c.Now().Sub(t0)) })
	}
	ch, stop := c.Timer(90 * time.Second)
	dropped, stopDropped := c.Timer(4 * time.Second)
	stopDropped()
	if now := c.Advance(5 * time.Second); !now.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("advanced to %s", now)
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("timers fired at %v, want %v (in deadline order, the clock at each deadline)", got, want)
	}
	select {
	case <-dropped:
		t.Fatal("a stopped timer fired")
	case <-ch:
		t.Fatal("a timer fired before its deadline")
	default:
	}
	if c.Pending() != 1 {
		t.Fatalf("%d timers pending, want 1", c.Pending())
	}
	<-c.After(85 * time.Second)
	select {
	case <-ch:
	default:
		t.Fatal("the timer did not fire at its deadline")
	}
	stop() // after firing: no effect
}

func testFleet(clock *Clock, n int, failing ...int) *Fleet {
	refs := make([]scheduler.DeviceRef, n)
	for i := range refs {
		refs[i] = scheduler.DeviceRef{ID: "dev-" + string(rune('a'+i)) + "-0000000", Name: "d" + string(rune('a'+i)), Class: "c"}
	}
	return NewFleet(clock, FleetConfig{
		SwitchLatency: 2 * time.Second, Parallel: 2, StartDelay: 5 * time.Second, CheckDelay: 15 * time.Second,
		FailVersion: "2.0", FailDevice: func(i int) bool { return slices.Contains(failing, i) },
	}, refs, "1.0", nil)
}

// Fleet.Changes answers like a blocking query: at once when the index
// moved, else on the next change (only the changed devices), else when its
// wait time ends on the simulated clock, with the same index.
func TestFleetChangesIsABlockingQuery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := NewClock(t0)
	f := testFleet(clock, 3)
	if err := f.PrepareCandidate(ctx, &scheduler.Rollout{Version: "2.0", Candidate: "green"}); err != nil {
		t.Fatal(err)
	}
	all, idx, err := f.Changes(ctx, 0, time.Minute)
	if err != nil || len(all) != 3 || idx == 0 {
		t.Fatalf("first read: %d views, index %d, %v", len(all), idx, err)
	}
	type answer struct {
		views []DeviceView
		idx   uint64
		err   error
	}
	res := make(chan answer, 1)
	go func() {
		v, i, err := f.Changes(ctx, idx, time.Minute)
		res <- answer{v, i, err}
	}()
	waitFor(t, "the query to block", func() bool { return f.openPolls.Load() == 1 && clock.Pending() == 1 })
	select {
	case a := <-res:
		t.Fatalf("the query returned without a change: %+v", a)
	default:
	}
	ref := all[1].Ref
	if err := f.SwitchDevice(ctx, *ref, "blue", "green"); err != nil {
		t.Fatal(err)
	}
	a := <-res
	if a.err != nil || a.idx <= idx || len(a.views) != 1 || a.views[0].Ref.ID != ref.ID || a.views[0].Meta != "green" {
		t.Fatalf("after a switch: %+v, want the switched device at a later index than %d", a, idx)
	}
	if clock.Pending() != 2 {
		// The query's wait timer is gone; the device's two events remain.
		t.Fatalf("%d timers pending, want 2 (start and check of the switched device)", clock.Pending())
	}
	// Nothing changes: the wait time ends, same index, no views.
	idx = a.idx
	clock.Advance(time.Hour) // the device's events fire first
	_, idx, _ = f.Changes(ctx, idx, time.Minute)
	go func() {
		v, i, err := f.Changes(ctx, idx, 30*time.Second)
		res <- answer{v, i, err}
	}()
	waitFor(t, "the query to block", func() bool { return clock.Pending() == 1 })
	clock.Advance(29 * time.Second)
	select {
	case a := <-res:
		t.Fatalf("the query returned before its wait time: %+v", a)
	default:
	}
	clock.Advance(time.Second)
	if a := <-res; a.err != nil || a.idx != idx || len(a.views) != 0 {
		t.Fatalf("at the end of the wait time: %+v, want no views at index %d", a, idx)
	}
	// A cancelled context ends the query.
	go func() {
		v, i, err := f.Changes(ctx, idx, time.Minute)
		res <- answer{v, i, err}
	}()
	waitFor(t, "the query to block", func() bool { return f.openPolls.Load() == 1 })
	cancel()
	if a := <-res; !errors.Is(a.err, context.Canceled) {
		t.Fatalf("after cancel: %+v", a)
	}
}

// A switched device's new allocation starts, then its check runs: passing,
// or critical on a device that fails the release. Health follows it.
func TestSwitchCompletesAfterDelays(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := NewClock(t0)
	f := testFleet(clock, 2, 1)
	w := Watch(ctx, f, time.Minute)
	r := &scheduler.Rollout{App: "app", Version: "2.0", Active: "blue", Candidate: "green"}
	if err := f.PrepareCandidate(ctx, r); err != nil {
		t.Fatal(err)
	}
	refs := []scheduler.DeviceRef{{ID: "dev-a-0000000", Name: "da"}, {ID: "dev-b-0000000", Name: "db"}}
	for _, ref := range refs {
		if err := f.SwitchDevice(ctx, ref, "blue", "green"); err != nil {
			t.Fatal(err)
		}
	}
	status := func() (alloc, check string, checkOut string) {
		h, err := w.Health(ctx, r, refs)
		if err != nil {
			t.Fatal(err)
		}
		ok, bad := h[refs[0].ID], h[refs[1].ID]
		if ok.Alloc == nil || bad.Alloc == nil || len(ok.Checks) != 2 || len(bad.Checks) != 2 {
			t.Fatalf("health: %+v %+v", ok, bad)
		}
		return ok.Alloc.Status + "/" + bad.Alloc.Status, ok.Checks[1].Status + "/" + bad.Checks[1].Status, bad.Checks[1].Output
	}
	if a, c, out := status(); a != "pending/pending" || c != "critical/critical" || out != "" {
		t.Fatalf("just switched: %s %s %q, want pending allocations with checks not run yet", a, c, out)
	}
	clock.Advance(5 * time.Second)
	if a, _, _ := status(); a != "running/running" {
		t.Fatalf("after the start delay: %s", a)
	}
	clock.Advance(10 * time.Second)
	if _, c, out := status(); c != "passing/critical" || out == "" {
		t.Fatalf("after the check delay: %s %q, want the failing device critical with output", c, out)
	}
	// The active slot's allocation stopped on the switched devices.
	if got := f.Running(refs[0].ID); !slices.Equal(got, []string{"green@2.0"}) {
		t.Fatalf("running on %s: %v", refs[0].Name, got)
	}
	f.SetOnline(refs[0].ID, false)
	if err := f.SwitchDevice(ctx, refs[0], "green", "blue"); !errors.Is(err, scheduler.ErrDeviceOffline) {
		t.Fatalf("switching an offline device: %v", err)
	}
	if h, _ := w.Health(ctx, r, refs[:1]); h[refs[0].ID].Online {
		t.Fatal("an offline device reads online")
	}
}

func TestStoreCheckAndSetAndControls(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := NewClock(t0)
	s := NewStore(clock)
	d := &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: "x", Name: "x"}, State: scheduler.DevicePending}
	if err := s.SaveDevice(ctx, "app", d); err != nil || d.Index == 0 {
		t.Fatalf("first write: index %d, %v", d.Index, err)
	}
	stale := *d
	if err := s.SaveDevice(ctx, "app", d); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDevice(ctx, "app", &stale); !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("a stale write: %v, want a conflict", err)
	}
	if st := s.Stats(); st.DeviceWrites != 2 || st.Conflicts != 1 {
		t.Fatalf("stats %+v", st)
	}
	_, idx, err := s.Controls(ctx, "app", 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	type answer struct {
		ctl scheduler.Controls
		idx uint64
	}
	res := make(chan answer, 1)
	go func() {
		ctl, i, _ := s.Controls(ctx, "app", idx, 30*time.Second)
		res <- answer{ctl, i}
	}()
	waitFor(t, "the query to block", func() bool { return clock.Pending() == 1 })
	if err := s.SetControls("app", scheduler.Controls{Pause: &scheduler.Request{Actor: "op"}}); err != nil {
		t.Fatal(err)
	}
	if a := <-res; a.ctl.Pause == nil || a.idx <= idx {
		t.Fatalf("after a request: %+v", a)
	}
	_, idx, _ = s.Controls(ctx, "app", 0, 0)
	go func() {
		ctl, i, _ := s.Controls(ctx, "app", idx, 30*time.Second)
		res <- answer{ctl, i}
	}()
	waitFor(t, "the query to block", func() bool { return clock.Pending() == 1 })
	clock.Advance(30 * time.Second)
	if a := <-res; a.idx != idx || a.ctl.Pause == nil {
		t.Fatalf("at the end of the wait time: %+v, want the same requests at index %d", a, idx)
	}
}

// A full run: every device that was online ends on the candidate slot
// running the release, except those that failed it (back on the old slot,
// quarantined); offline devices are untouched.
func TestRunRollout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, res := runSim(ctx, t, Config{Devices: 600, Offline: 0.02, Fail: 0.02, Seed: 1})
	r := res.Rollout
	if r.Outcome != scheduler.OutcomeSucceeded {
		t.Fatalf("outcome %q, want succeeded; last: %s", r.Outcome, r.LastAction)
	}
	var healthy, quarantined, offline int
	for _, rec := range r.Devices {
		meta, running := sim.Fleet.Meta(rec.ID), sim.Fleet.Running(rec.ID)
		switch rec.State {
		case scheduler.DeviceHealthy:
			healthy++
			if meta != "green" || !slices.Equal(running, []string{"green@2.0"}) {
				t.Errorf("healthy %s: %s", rec.Name, sim.Fleet.describe(rec.ID))
			}
		case scheduler.DeviceQuarantined:
			quarantined++
			if meta != "blue" {
				t.Errorf("quarantined %s: %s", rec.Name, sim.Fleet.describe(rec.ID))
			}
		case scheduler.DeviceSkippedOffline:
			offline++
			if meta != "blue" || !slices.Equal(running, []string{"blue@1.0"}) {
				t.Errorf("offline %s was touched: %s", rec.Name, sim.Fleet.describe(rec.ID))
			}
		default:
			t.Errorf("%s ended %s", rec.Name, rec.State)
		}
	}
	if quarantined == 0 || offline == 0 || healthy < 500 {
		t.Fatalf("%d healthy, %d quarantined, %d offline: the run did not meet failing and offline devices", healthy, quarantined, offline)
	}
	if quarantined != sim.Registry.QuarantinedCount() {
		t.Errorf("%d devices quarantined in the run, %d in the registry", quarantined, sim.Registry.QuarantinedCount())
	}
	if res.Fleet.MaxOpenPolls != 1 {
		t.Errorf("%d blocking queries on the fleet open at once, want 1 (the watcher)", res.Fleet.MaxOpenPolls)
	}
	if res.Store.DeviceWrites < int64(len(r.Devices)) || res.Simulated < 30*time.Minute {
		t.Errorf("store %+v, simulated %s", res.Store, res.Simulated)
	}
}

// A wave that fails is rolled back over the whole fleet, verified: every
// device runs the old version on the old slot again.
func TestRunRollback(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sim, res := runSim(ctx, t, Config{Devices: 600, Fail: 0.3, FailAfter: 0.2, Seed: 3})
	r := res.Rollout
	if r.Outcome != scheduler.OutcomeRolledBack {
		t.Fatalf("outcome %q, want rolled-back; last: %s", r.Outcome, r.LastAction)
	}
	if r.RollbackStage < 2 {
		t.Fatalf("rolled back at stage %d, want a wave after the first (the failures start after 20%% of the fleet)", r.RollbackStage)
	}
	rolledBack := 0
	for _, rec := range r.Devices {
		if meta, running := sim.Fleet.Meta(rec.ID), sim.Fleet.Running(rec.ID); meta != "blue" || !slices.Equal(running, []string{"blue@1.0"}) {
			t.Errorf("%s (%s): %s", rec.Name, rec.State, sim.Fleet.describe(rec.ID))
		}
		if rec.State == scheduler.DeviceRolledBack {
			rolledBack++
		}
	}
	if rolledBack < 100 {
		t.Fatalf("%d devices rolled back", rolledBack)
	}
}

func runSim(ctx context.Context, t *testing.T, cfg Config) (*Sim, *Result) {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sim, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := sim.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return sim, res
}
