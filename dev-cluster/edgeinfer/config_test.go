package main

import (
	"errors"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		name               string
		env                map[string]string
		wantVersion, build string
	}{
		{"default", nil, "0.0.0-dev", "0.0.0-dev"},
		{"nomad meta plain", map[string]string{envVersionMeta: "2.0.0"}, "2.0.0", "2.0.0"},
		{"nomad meta with rollout id", map[string]string{envVersionMeta: "2.0.0+r-20260102-abc"}, "2.0.0", "2.0.0+r-20260102-abc"},
		{"nomad meta wins over env", map[string]string{envVersionMeta: "2.0.0+x", envVersion: "1.0.0"}, "2.0.0", "2.0.0+x"},
		{"upper-case nomad meta", map[string]string{envVersionMetaUp: "3.1.4"}, "3.1.4", "3.1.4"},
		{"env fallback with build", map[string]string{envVersion: "1.2.3+local"}, "1.2.3", "1.2.3+local"},
		{"blank meta is unset", map[string]string{envVersionMeta: "  ", envVersion: "1.0.0"}, "1.0.0", "1.0.0"},
		{"whitespace trimmed", map[string]string{envVersionMeta: " 2.0.1\n"}, "2.0.1", "2.0.1"},
		{"prerelease kept", map[string]string{envVersion: "2.0.0-rc.1+r7"}, "2.0.0-rc.1", "2.0.0-rc.1+r7"},
		{"only build metadata", map[string]string{envVersion: "+r7"}, "0.0.0-dev", "+r7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, b := parseVersion(envFunc(tt.env))
			if v != tt.wantVersion || b != tt.build {
				t.Errorf("parseVersion = (%q, %q), want (%q, %q)", v, b, tt.wantVersion, tt.build)
			}
		})
	}
}

func TestParseConfigAddr(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"default", nil, nil, "127.0.0.1:8080"},
		{"env", nil, map[string]string{envAddr: "127.0.0.3:9999"}, "127.0.0.3:9999"},
		{"flag wins over env", []string{"-addr", "127.0.0.2:23456"}, map[string]string{envAddr: "127.0.0.3:9999"}, "127.0.0.2:23456"},
		{"nomad style", []string{"-addr", "127.0.0.4:20123"}, nil, "127.0.0.4:20123"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := parseConfig(tt.args, envFunc(tt.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.addr != tt.want {
				t.Errorf("addr = %q, want %q", cfg.addr, tt.want)
			}
		})
	}
}

func TestParseConfigFlagsErrors(t *testing.T) {
	if _, _, err := parseConfig([]string{"-h"}, envFunc(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: err = %v, want flag.ErrHelp", err)
	}
	if _, _, err := parseConfig([]string{"-nope"}, envFunc(nil), io.Discard); err == nil {
		t.Error("unknown flag: no error")
	}
	if _, _, err := parseConfig([]string{"extra"}, envFunc(nil), io.Discard); err == nil {
		t.Error("positional argument: no error")
	}
	_, v, err := parseConfig([]string{"-version"}, envFunc(nil), io.Discard)
	if err != nil || !v {
		t.Errorf("-version: (%v, %v), want (true, nil)", v, err)
	}
}

func TestParseConfigModel(t *testing.T) {
	cfg, _, _ := parseConfig(nil, envFunc(nil), io.Discard)
	if cfg.model != "" || cfg.modelName() != defaultModel {
		t.Errorf("unset MODEL: model=%q name=%q", cfg.model, cfg.modelName())
	}
	cfg, _, _ = parseConfig(nil, envFunc(map[string]string{"MODEL": "yolo-trt-fp16"}), io.Discard)
	if cfg.model != "yolo-trt-fp16" || cfg.modelName() != "yolo-trt-fp16" {
		t.Errorf("MODEL set: model=%q name=%q", cfg.model, cfg.modelName())
	}
}

func TestParseFaultsValid(t *testing.T) {
	base := faults{leakMaxMB: 512, rampMax: 30 * time.Second}
	tests := []struct {
		name string
		env  map[string]string
		want func(f *faults)
	}{
		{"none", nil, func(f *faults) {}},
		{"crash", map[string]string{envCrash: "1"}, func(f *faults) { f.crash = true }},
		{"crash false", map[string]string{envCrash: "0"}, func(f *faults) {}},
		{"crash true word", map[string]string{envCrash: "true"}, func(f *faults) { f.crash = true }},
		{"unhealthy duration", map[string]string{envUnhealthyAfter: "10s"}, func(f *faults) { f.unhealthy, f.unhealthyAfter = true, 10*time.Second }},
		{"unhealthy seconds", map[string]string{envUnhealthyAfter: "90"}, func(f *faults) { f.unhealthy, f.unhealthyAfter = true, 90*time.Second }},
		{"unhealthy zero", map[string]string{envUnhealthyAfter: "0s"}, func(f *faults) { f.unhealthy = true }},
		{"degraded", map[string]string{envDegraded: "1"}, func(f *faults) { f.degraded = true }},
		{"wrong output", map[string]string{envWrongOutput: "1"}, func(f *faults) { f.wrongOutput = true }},
		{"slow", map[string]string{envSlow: "300ms"}, func(f *faults) { f.slow = 300 * time.Millisecond }},
		{"slow fractional seconds", map[string]string{envSlow: "0.25"}, func(f *faults) { f.slow = 250 * time.Millisecond }},
		{"leak", map[string]string{envLeakRate: "5"}, func(f *faults) { f.leakMBPerS = 5 }},
		{"leak with cap", map[string]string{envLeakRate: "0.5", envLeakMax: "64"}, func(f *faults) { f.leakMBPerS, f.leakMaxMB = 0.5, 64 }},
		{"ramp per second", map[string]string{envLatencyRamp: "50ms/s"}, func(f *faults) { f.rampNum, f.rampPer = 50*time.Millisecond, time.Second }},
		{"ramp per minute", map[string]string{envLatencyRamp: "1s/m"}, func(f *faults) { f.rampNum, f.rampPer = time.Second, time.Minute }},
		{"ramp per duration", map[string]string{envLatencyRamp: "100ms/10s"}, func(f *faults) { f.rampNum, f.rampPer = 100*time.Millisecond, 10*time.Second }},
		{"ramp max", map[string]string{envLatencyRamp: "50ms/s", envLatencyRampMax: "2s"}, func(f *faults) {
			f.rampNum, f.rampPer, f.rampMax = 50*time.Millisecond, time.Second, 2*time.Second
		}},
		{"error rate fraction", map[string]string{envErrorRate: "0.2"}, func(f *faults) { f.errorRatePPM = 200_000 }},
		{"error rate percent", map[string]string{envErrorRate: "25%"}, func(f *faults) { f.errorRatePPM = 250_000 }},
		{"error rate one", map[string]string{envErrorRate: "1"}, func(f *faults) { f.errorRatePPM = 1_000_000 }},
		{"wrong version", map[string]string{envWrongVersion: "9.9.9"}, func(f *faults) { f.wrongVersion = "9.9.9" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFaults(envFunc(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			want := base
			tt.want(&want)
			got.set = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseFaults =\n %+v\nwant\n %+v", got, want)
			}
		})
	}
}

func TestParseFaultsInvalid(t *testing.T) {
	tests := map[string]string{
		envCrash:          "yes please",
		envDegraded:       "2",
		envWrongOutput:    "dog",
		envUnhealthyAfter: "soon",
		envSlow:           "-5ms",
		envLeakRate:       "lots",
		envLeakMax:        "1.5",
		envLatencyRamp:    "50ms",
		envLatencyRampMax: "forever",
		envErrorRate:      "1.5",
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := parseFaults(envFunc(map[string]string{name: value}))
			if err == nil {
				t.Fatalf("%s=%q: no error", name, value)
			}
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name %s", err, name)
			}
		})
	}
	// Several bad values are all reported at once.
	_, err := parseFaults(envFunc(map[string]string{envSlow: "x", envErrorRate: "-1"}))
	if err == nil || !strings.Contains(err.Error(), envSlow) || !strings.Contains(err.Error(), envErrorRate) {
		t.Errorf("two bad values: err = %v", err)
	}
}

func TestParseRamp(t *testing.T) {
	for _, bad := range []string{"", "50ms", "x/s", "50ms/x", "50ms/0s", "-5ms/s"} {
		if _, _, err := parseRamp(bad); err == nil {
			t.Errorf("parseRamp(%q): no error", bad)
		}
	}
	num, per, err := parseRamp(" 20ms / 500ms ")
	if err != nil || num != 20*time.Millisecond || per != 500*time.Millisecond {
		t.Errorf("parseRamp = (%v, %v, %v)", num, per, err)
	}
}

func TestFaultsDescribe(t *testing.T) {
	f, err := parseFaults(envFunc(map[string]string{envSlow: "300ms", envDegraded: "1"}))
	if err != nil {
		t.Fatal(err)
	}
	d := f.describe()
	if !strings.Contains(d, "EDGEINFER_FAULT_SLOW=300ms") || !strings.Contains(d, "EDGEINFER_FAULT_DEGRADED=1") {
		t.Errorf("describe = %q", d)
	}
	if got := (faults{}).describe(); got != "none" {
		t.Errorf("no faults: describe = %q", got)
	}
}

func TestParseFaultsNodes(t *testing.T) {
	none := faults{leakMaxMB: 512, rampMax: 30 * time.Second}
	tests := []struct {
		name    string
		env     map[string]string
		applied bool
	}{
		{"no node list: every node", map[string]string{envSlow: "400ms", envNode: "rpi-1"}, true},
		{"node in the list", map[string]string{envSlow: "400ms", envFaultNodes: "jetson-1,rpi-1", envNode: "rpi-1"}, true},
		{"spaces around names", map[string]string{envSlow: "400ms", envFaultNodes: " jetson-1 , rpi-1 ", envNode: "rpi-1"}, true},
		{"node not in the list", map[string]string{envSlow: "400ms", envFaultNodes: "jetson-1,rpi-2", envNode: "rpi-1"}, false},
		{"prefix is not a match", map[string]string{envSlow: "400ms", envFaultNodes: "rpi-10", envNode: "rpi-1"}, false},
		{"node unknown", map[string]string{envSlow: "400ms", envFaultNodes: "rpi-1"}, false},
		{"blank list: every node", map[string]string{envSlow: "400ms", envFaultNodes: "  ", envNode: "rpi-1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseFaults(envFunc(tt.env))
			if err != nil {
				t.Fatal(err)
			}
			if tt.applied {
				if got.slow != 400*time.Millisecond || got.off != "" {
					t.Errorf("faults not applied: %+v", got)
				}
				if strings.TrimSpace(tt.env[envFaultNodes]) != "" && !strings.Contains(got.describe(), envFaultNodes) {
					t.Errorf("describe = %q, want the node list", got.describe())
				}
				return
			}
			off := got.off
			got.off, got.set = "", nil
			if !reflect.DeepEqual(got, none) {
				t.Errorf("faults applied on a node not in the list: %+v", got)
			}
			if d := (faults{off: off}).describe(); !strings.HasPrefix(d, "none (") || !strings.Contains(d, envFaultNodes) || !strings.Contains(d, "EDGEINFER_FAULT_SLOW=400ms") {
				t.Errorf("describe = %q", d)
			}
		})
	}
	// A bad value stops the program on every node, targeted or not.
	_, err := parseFaults(envFunc(map[string]string{envSlow: "soon", envFaultNodes: "jetson-1", envNode: "rpi-1"}))
	if err == nil || !strings.Contains(err.Error(), envSlow) {
		t.Errorf("bad value on a node not in the list: err = %v", err)
	}
}
