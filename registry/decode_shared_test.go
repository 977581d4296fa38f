package registry

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// deviceVariants is a device and, for every field (every capability
// included), the device with that one field changed.
func deviceVariants(t *testing.T) []scheduler.Device {
	t.Helper()
	base := sampleDevice(7)
	base.Reason = "why"
	out := []scheduler.Device{base}
	v := reflect.ValueOf(&base).Elem()
	for i := 0; i < v.NumField(); i++ {
		d := base
		d.Meta = map[string]string{"fleet": "vision", "fleetplan.app.slot": "blue"}
		d.Apps = map[string]scheduler.AppSlot{"app": {Slot: "blue", Version: "1"}}
		f := reflect.ValueOf(&d).Elem().Field(i)
		switch name := v.Type().Field(i).Name; name {
		case "Capabilities":
			for j := 0; j < f.NumField(); j++ {
				c := base
				cf := reflect.ValueOf(&c.Capabilities).Elem().Field(j)
				if cf.Kind() == reflect.Int {
					cf.SetInt(cf.Int() + 1)
				} else {
					cf.SetString(cf.String() + "-x")
				}
				out = append(out, c)
			}
			continue
		case "Meta":
			d.Meta["fleet"] = "audio"
		case "Apps":
			d.Apps["app"] = scheduler.AppSlot{Slot: "green", Version: "1"}
		case "LastHeartbeat":
			d.LastHeartbeat = d.LastHeartbeat.Add(1)
		case "Resolved":
			d.Resolved = true
		default:
			if f.Kind() != reflect.String {
				t.Fatalf("field %s (%s) is not covered by this test: add it", name, f.Kind())
			}
			f.SetString(f.String() + "-x")
		}
		out = append(out, d)
	}
	return out
}

// With one interner across entries (capabilities, metadata and apps shared
// by their encoded bytes), every changed field still decodes as with
// encoding/json, whatever was decoded before.
func TestDecodeEntrySharedInterner(t *testing.T) {
	variants := deviceVariants(t)
	in := interner{shareMaps: true}
	for pass := range 2 { // the second pass meets every value shared
		for i, d := range variants {
			data, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var want scheduler.Device
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			got, err := decodeEntry(data, &in)
			if err != nil {
				t.Fatalf("pass %d, variant %d: %v", pass, i, err)
			}
			if got.ID != "" {
				t.Fatalf("decodeEntry kept the stored ID %q (the caller sets it from the key)", got.ID)
			}
			got.ID = want.ID
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("pass %d, variant %d:\n got %+v\nwant %+v", pass, i, got, want)
			}
		}
	}
	if len(in.caps) < 2 {
		t.Fatalf("the interner shares %d capabilities, want one per distinct value", len(in.caps))
	}
}

// decodeAll on a second goroutine gives what it gives on one: the same
// snapshot, the same error.
func TestDecodeAllPipelined(t *testing.T) {
	const prefix = "fleetplan/registry/"
	var pairs consulapi.KVPairs
	variants := deviceVariants(t)
	for i := range 3000 {
		d := variants[i%len(variants)]
		d.ID = fmt.Sprintf("%08d-0000-0000-0000-000000000000", i)
		d.Name = fmt.Sprintf("dev-%d", i)
		if i%97 == 0 {
			d.Reason = "quoted \"reason\"" // an escape: the slow path
		}
		v, _ := json.Marshal(d)
		pairs = append(pairs, &consulapi.KVPair{Key: prefix + d.ID, Value: v, ModifyIndex: uint64(10 + i)})
	}
	pairs = append(pairs, &consulapi.KVPair{Key: prefix + "sub/folder", Value: []byte("{}")}, &consulapi.KVPair{Key: prefix})
	decode := func(min int, shareMaps bool, pairs consulapi.KVPairs) (snapshot, error) {
		var s snapshot
		var err error
		withPipelineMin(t, min, func() { s, err = decodeAll(prefix, pairs, shareMaps) })
		return s, err
	}
	for _, share := range []bool{false, true} {
		want, err := decode(1<<30, share, pairs)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decode(0, share, pairs)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.devices) != 3000 || !reflect.DeepEqual(got, want) {
			t.Fatalf("pipelined snapshot differs (%d devices, want %d of 3000)", len(got.devices), len(want.devices))
		}
	}
	bad := append(consulapi.KVPairs{}, pairs...)
	bad[1700] = &consulapi.KVPair{Key: prefix + "broken", Value: []byte(`{"id": `)}
	_, wantErr := decode(1<<30, true, bad)
	got, err := decode(0, true, bad)
	if wantErr == nil || err == nil || err.Error() != wantErr.Error() || got.devices != nil {
		t.Fatalf("a broken entry: error %v, want %v (and no snapshot)", err, wantErr)
	}
}
