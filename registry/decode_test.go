package registry

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/fleetplan/fleetplan/scheduler"
)

// checkDecode asserts that decodeDevice gives what json.Unmarshal gives
// (the value, or an error on both sides) and reports whether the fast path
// took the input.
func checkDecode(t testing.TB, data []byte) (fast bool) {
	t.Helper()
	var want scheduler.Device
	wantErr := json.Unmarshal(data, &want)
	var in interner
	got, err := decodeDevice(data, &in)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("decoding %s: error %v, encoding/json says %v", data, err, wantErr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("decoding %s:\n got %+v\nwant %+v", data, got, want)
	}
	var d scheduler.Device
	p := devParser{data: data, in: &in}
	return p.device(&d)
}

// Every field of a device, changed one at a time, decodes as with
// encoding/json, on the fast path.
func TestDecodeDeviceEveryField(t *testing.T) {
	base := sampleDevice(7)
	base.Reason, base.Resolved = "why", true
	v := reflect.ValueOf(&base).Elem()
	variants := []scheduler.Device{base}
	for i := 0; i < v.NumField(); i++ {
		d := base
		f := reflect.ValueOf(&d).Elem().Field(i)
		name := v.Type().Field(i).Name
		switch name {
		case "Capabilities":
			for j := 0; j < f.NumField(); j++ {
				c := base
				cf := reflect.ValueOf(&c.Capabilities).Elem().Field(j)
				if cf.Kind() == reflect.Int {
					cf.SetInt(cf.Int() + 1)
				} else {
					cf.SetString(cf.String() + "-x")
				}
				variants = append(variants, c)
			}
			continue
		case "Meta":
			d.Meta = map[string]string{"fleet": "other", "k2": "v2"}
		case "Apps":
			d.Apps = map[string]scheduler.AppSlot{"app": {Slot: "green", Version: "2"}, "b": {Slot: "blue"}}
		case "LastHeartbeat":
			d.LastHeartbeat = d.LastHeartbeat.Add(1500 * time.Millisecond)
		case "Resolved":
			d.Resolved = false
		default:
			if f.Kind() != reflect.String {
				t.Fatalf("field %s (%s) is not covered by this test: add it", name, f.Kind())
			}
			f.SetString(f.String() + "-x")
		}
		variants = append(variants, d)
	}
	// Empty and missing maps, a zero heartbeat.
	empty := base
	empty.Meta, empty.Apps, empty.LastHeartbeat = map[string]string{}, map[string]scheduler.AppSlot{}, time.Time{}
	variants = append(variants, empty, scheduler.Device{ID: "x"})
	for _, d := range variants {
		data, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if !checkDecode(t, data) {
			t.Errorf("the fast path refused an entry as fleetplan writes it: %s", data)
		}
	}
}

// Inputs the fast path does not take still decode as with encoding/json.
func TestDecodeDeviceFallback(t *testing.T) {
	data, err := json.Marshal(sampleDevice(3))
	if err != nil {
		t.Fatal(err)
	}
	plain := string(data)
	cases := map[string]string{
		"escape":         strings.Replace(plain, `"dev-3"`, `"dev\u002d3"`, 1),
		"non-ascii":      strings.Replace(plain, `"dev-3"`, `"dév-3"`, 1),
		"unknown field":  strings.Replace(plain, `{"id"`, `{"extra":[1,{"a":null}],"id"`, 1),
		"repeated field": strings.Replace(plain, `{"id"`, `{"meta":{"a":"b"},"id"`, 1),
		"upper-case key": strings.Replace(plain, `"name"`, `"NAME"`, 1),
		"null meta":      strings.Replace(plain, `"meta":{`, `"meta":null,"x":{`, 1),
		"null time":      strings.Replace(plain, `"last_heartbeat":"`+sampleDevice(3).LastHeartbeat.Format(time.RFC3339Nano)+`"`, `"last_heartbeat":null`, 1),
		"bad time":       strings.Replace(plain, `"last_heartbeat":"`, `"last_heartbeat":"x`, 1),
		"float memory":   strings.Replace(plain, `"memory_mb":4096`, `"memory_mb":4096.0`, 1),
		"exp memory":     strings.Replace(plain, `"memory_mb":4096`, `"memory_mb":4e3`, 1),
		"leading zero":   strings.Replace(plain, `"memory_mb":4096`, `"memory_mb":04096`, 1),
		"huge memory":    strings.Replace(plain, `"memory_mb":4096`, `"memory_mb":99999999999999999999999`, 1),
		"string memory":  strings.Replace(plain, `"memory_mb":4096`, `"memory_mb":"4096"`, 1),
		"whitespace":     strings.ReplaceAll(plain, `,`, " ,\n\t"),
		"trailing":       plain + `{}`,
		"truncated":      plain[:len(plain)-3],
		"not an object":  `[1,2]`,
		"empty":          ``,
		"resolved str":   strings.Replace(plain, `"status":"ok"`, `"status":"ok","resolved":"yes"`, 1),
		"resolved false": strings.Replace(plain, `"status":"ok"`, `"status":"ok","resolved":false`, 1),
		"app extra":      strings.Replace(plain, `"version":"1"`, `"version":"1","x":2`, 1),
		"dup meta key":   strings.Replace(plain, `"meta":{`, `"meta":{"fleet":"a",`, 1),
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if in == plain && name != "empty" {
				t.Fatalf("the case did not change the input: %s", in)
			}
			checkDecode(t, []byte(in))
		})
	}
}

// The interner shares repeated values between entries.
func TestDecodeDeviceInterns(t *testing.T) {
	var in interner
	a, _ := json.Marshal(sampleDevice(1))
	b, _ := json.Marshal(sampleDevice(4))
	da, err := decodeDevice(a, &in)
	if err != nil {
		t.Fatal(err)
	}
	db, err := decodeDevice(b, &in)
	if err != nil {
		t.Fatal(err)
	}
	if da.Class != db.Class || da.Capabilities != db.Capabilities || !reflect.DeepEqual(da.Meta, db.Meta) {
		t.Fatalf("the samples differ: %+v %+v", da, db)
	}
	if unsafeData(da.Class) != unsafeData(db.Class) || unsafeData(da.Meta["fleet"]) != unsafeData(db.Meta["fleet"]) {
		t.Error("repeated values are not shared")
	}
}

func unsafeData(s string) *byte { return unsafe.StringData(s) }

func FuzzDecodeDevice(f *testing.F) {
	for i := range 3 {
		d := sampleDevice(i)
		data, _ := json.Marshal(d)
		f.Add(data)
	}
	f.Add([]byte(`{"id":"a","meta":{"x":"y"},"apps":{"a":{"slot":"blue"}},"resolved":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data)
	})
}
