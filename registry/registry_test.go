package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sampleDevice(i int) scheduler.Device {
	return scheduler.Device{
		ID: fmt.Sprintf("%08d-0000-0000-0000-000000000000", i), Name: fmt.Sprintf("dev-%d", i), Class: []string{"jetson", "rpi", "gateway"}[i%3],
		Datacenter: "dc1", NomadStatus: "ready", Eligibility: "eligible", ConsulStatus: "passing", Address: "10.0.0.1",
		Capabilities:  scheduler.Capabilities{Arch: "arm64", OS: "linux", Kernel: "6.1", MemoryMB: 4096, Accelerator: "none", Model: "rpi-5"},
		Meta:          map[string]string{"fleet": "vision", "fleetplan.app.slot": "blue"},
		Apps:          map[string]scheduler.AppSlot{"app": {Slot: "blue", Version: "1"}},
		LastHeartbeat: testNow.Add(-time.Minute), Status: scheduler.StatusOK,
	}
}

// equalDevice must compare every field of scheduler.Device: changing any one
// field must make two devices differ.
func TestEqualDeviceCoversEveryField(t *testing.T) {
	base := sampleDevice(1)
	if !equalDevice(base, sampleDevice(1)) {
		t.Fatal("equal devices differ")
	}
	v := reflect.ValueOf(&base).Elem()
	for i := 0; i < v.NumField(); i++ {
		d := sampleDevice(1)
		f := reflect.ValueOf(&d).Elem().Field(i)
		name := v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			f.SetString(f.String() + "x")
		case reflect.Bool:
			f.SetBool(!f.Bool())
		case reflect.Map:
			f.Set(reflect.Zero(f.Type()))
		case reflect.Struct:
			switch x := f.Addr().Interface().(type) {
			case *time.Time:
				*x = x.Add(time.Second)
			case *scheduler.Capabilities:
				x.Kernel += "x"
			default:
				t.Fatalf("field %s: unknown struct type %T; teach equalDevice and this test about it", name, x)
			}
		default:
			t.Fatalf("field %s: unknown kind %s; teach equalDevice and this test about it", name, f.Kind())
		}
		if equalDevice(sampleDevice(1), d) {
			t.Errorf("equalDevice misses a change of %s", name)
		}
	}
}

func snapshotOf(ds ...scheduler.Device) snapshot {
	s := snapshot{devices: map[string]scheduler.Device{}, index: map[string]uint64{}}
	for i, d := range ds {
		s.devices[d.ID] = d
		s.index[d.ID] = uint64(100 + i)
	}
	return s
}

func observe(ds ...scheduler.Device) scheduler.Observed {
	o := scheduler.Observed{Nomad: map[string]scheduler.NomadNode{}, Consul: map[string]scheduler.ConsulNode{}}
	for _, d := range ds {
		o.Nomad[d.Name] = scheduler.NomadNode{ID: d.ID, Name: d.Name, Class: d.Class, Datacenter: d.Datacenter, Status: d.NomadStatus,
			Eligibility: d.Eligibility, Address: d.Address, Capabilities: d.Capabilities, Meta: d.Meta, Apps: d.Apps}
		if d.ConsulStatus != "" {
			o.Consul[d.Name] = scheduler.ConsulNode{Name: d.Name, Address: d.Address, SerfStatus: d.ConsulStatus}
		}
	}
	return o
}

func TestPlanSync(t *testing.T) {
	r := &Registry{hbResolution: 5 * time.Minute}
	a, b, c := sampleDevice(1), sampleDevice(2), sampleDevice(3)
	stale := sampleDevice(4)
	stale.LastHeartbeat = testNow.Add(-time.Hour)

	t.Run("a healthy fleet writes nothing", func(t *testing.T) {
		p := r.planSync(snapshotOf(a, b, c), observe(a, b, c), testNow)
		if len(p.ops) != 0 || len(p.events) != 0 {
			t.Fatalf("ops %+v events %+v", p.ops, p.events)
		}
	})
	t.Run("an old heartbeat is refreshed", func(t *testing.T) {
		p := r.planSync(snapshotOf(stale), observe(stale), testNow)
		if len(p.ops) != 1 || p.ops[0].Index != 100 {
			t.Fatalf("ops %+v", p.ops)
		}
		var d scheduler.Device
		if err := json.Unmarshal(p.ops[0].Value, &d); err != nil || !d.LastHeartbeat.Equal(testNow) {
			t.Fatalf("written %+v %v", d, err)
		}
	})
	t.Run("offline, new, gone", func(t *testing.T) {
		down := b
		down.NomadStatus, down.ConsulStatus = "down", ""
		fresh := sampleDevice(9)
		gone := scheduler.Device{ID: "consul:ghost", Name: "ghost", Status: scheduler.StatusDiscrepancy}
		p := r.planSync(snapshotOf(a, b, gone), observe(a, down, fresh), testNow)
		got := map[string]string{}
		for _, op := range p.ops {
			kind := "write"
			if op.Value == nil {
				kind = "delete"
			}
			got[op.ID] = fmt.Sprintf("%s@%d", kind, op.Index)
		}
		want := map[string]string{b.ID: "write@101", fresh.ID: "write@0", gone.ID: "delete@102"}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("ops %v, want %v", got, want)
		}
		// Events of writes that did not commit are dropped (a retry
		// computes them again).
		evs := p.eventsFor(map[string]bool{fresh.ID: true, gone.ID: true}, testNow)
		for _, e := range evs {
			if e.Device == b.ID {
				t.Errorf("event of an uncommitted write: %+v", e)
			}
			if e.Actor != ActorSync || !e.Time.Equal(testNow) {
				t.Errorf("event without actor or time: %+v", e)
			}
		}
		if len(evs) == 0 {
			t.Fatal("no events")
		}
	})
}

func TestCapabilities(t *testing.T) {
	attrs := map[string]string{"cpu.arch": "arm64", "os.name": "ubuntu", "kernel.version": "5.15.0-tegra", "memory.totalbytes": "8589934592"}
	got := capabilities(attrs, map[string]string{"hw.model": "jetson-orin-nano", "hw.accelerator": "cuda"})
	want := scheduler.Capabilities{Arch: "arm64", OS: "ubuntu", Kernel: "5.15.0-tegra", MemoryMB: 8192, Accelerator: "cuda", Model: "jetson-orin-nano"}
	if got != want {
		t.Errorf("from attributes: %+v, want %+v", got, want)
	}
	got = capabilities(attrs, map[string]string{"hw.mem_mb": "4096"})
	if got.MemoryMB != 4096 {
		t.Errorf("hw.mem_mb does not win over the fingerprint: %d", got.MemoryMB)
	}
}

func TestAppSlots(t *testing.T) {
	got := appSlots(map[string]string{"fleetplan.edgeinfer.slot": "green", "fleetplan.x.y.slot": "blue", "fleetplan..slot": "blue", "fleet": "vision", "fleetplan.empty.slot": ""})
	want := map[string]scheduler.AppSlot{"edgeinfer": {Slot: "green"}, "x.y": {Slot: "blue"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("appSlots = %v, want %v", got, want)
	}
	if appSlots(map[string]string{"fleet": "vision"}) != nil {
		t.Error("no apps should give nil")
	}
}

func TestDecodeSnapshot(t *testing.T) {
	d := sampleDevice(1)
	b, _ := json.Marshal(d)
	pairs := consulapi.KVPairs{
		{Key: "p/registry/" + d.ID, Value: b, ModifyIndex: 7},
		{Key: "p/registry/consul:ghost", Value: []byte(`{"name":"ghost","status":"discrepancy"}`), ModifyIndex: 8},
		{Key: "p/registry/nested/key", Value: []byte(`{}`), ModifyIndex: 9},
	}
	s, err := decodeSnapshot("p/registry/", pairs)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.devices) != 2 || s.index[d.ID] != 7 || s.devices["consul:ghost"].ID != "consul:ghost" || !equalDevice(s.devices[d.ID], d) {
		t.Fatalf("snapshot %+v", s)
	}
	if _, err := decodeSnapshot("p/registry/", consulapi.KVPairs{{Key: "p/registry/x", Value: []byte("{")}}); err == nil {
		t.Fatal("a broken entry decoded")
	}
}

func TestPackEvents(t *testing.T) {
	var evs []Event
	for i := 0; i < 3000; i++ {
		evs = append(evs, Event{Time: testNow, Actor: ActorSync, RegistryEvent: scheduler.RegistryEvent{Device: fmt.Sprint(i), Kind: "added", Detail: strings.Repeat("d", 200)}})
	}
	recs, err := store.Encode(evs)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := store.Pack(recs, store.EventChunks)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, c := range chunks {
		if len(c) > store.EventChunkBytes {
			t.Errorf("chunk of %d bytes", len(c))
		}
		var got []Event
		if err := json.Unmarshal(c, &got); err != nil {
			t.Fatal(err)
		}
		n += len(got)
	}
	if n != len(evs) || len(chunks) < 2 {
		t.Fatalf("%d events in %d chunks", n, len(chunks))
	}
	// The event JSON is flat: {"time","actor","device","name","kind","detail"}.
	b, _ := json.Marshal(evs[0])
	if !strings.Contains(string(b), `"kind":"added"`) || !strings.Contains(string(b), `"actor":"sync"`) {
		t.Errorf("event JSON %s", b)
	}
}

func TestInDatacenters(t *testing.T) {
	for _, tt := range []struct {
		dc   string
		pats []string
		want bool
	}{
		{"dc1", nil, true},
		{"dc1", []string{"dc1"}, true},
		{"dc1", []string{"dc2", "dc*"}, true},
		{"edge-eu", []string{"edge-*"}, true},
		{"dc1", []string{"dc2"}, false},
	} {
		if got := inDatacenters(tt.dc, tt.pats); got != tt.want {
			t.Errorf("inDatacenters(%s, %v) = %v", tt.dc, tt.pats, got)
		}
	}
}

// follow: index resets, non-moving and unchanged responses, backoff on
// errors, cancellation.
func TestFollow(t *testing.T) {
	type resp struct {
		index, fp uint64
		err       error
	}
	script := []resp{
		{5, 1, nil},                // first answer: change
		{5, 1, nil},                // wait timed out: nothing
		{7, 1, nil},                // index moved, nothing the registry cares about
		{8, 2, nil},                // change
		{0, 0, errors.New("boom")}, // error: back off, keep the index
		{0, 0, errors.New("boom")}, // again
		{3, 2, nil},                // index went backwards: reset and change
		{4, 2, nil},                // first answer after the reset: same content, still a change
	}
	wantWait := []uint64{0, 5, 5, 7, 8, 8, 8, 0}
	wantChanges := 4

	r := &Registry{minInterval: time.Millisecond, maxBackoff: 5 * time.Millisecond, logger: hclog.NewNullLogger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []uint64
	changes := 0
	i := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.follow(ctx, "fake", func(_ context.Context, wait uint64) (uint64, uint64, error) {
			waits = append(waits, wait)
			if i == len(script) {
				cancel()
				return 0, 0, context.Canceled
			}
			s := script[i]
			i++
			return s.index, s.fp, s.err
		}, func() { changes++ })
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not stop when its context ended")
	}
	if !reflect.DeepEqual(waits[:len(wantWait)], wantWait) {
		t.Errorf("wait indexes %v, want %v", waits, wantWait)
	}
	if changes != wantChanges {
		t.Errorf("%d changes, want %d", changes, wantChanges)
	}
}
