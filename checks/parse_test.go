package checks

import (
	"strings"
	"testing"
)

func TestParseCheckOutput(t *testing.T) {
	full := `HTTP GET http://127.0.0.1:20394/health: 200 OK Output: {"status":"healthy","version":"2.0.0","build":"2.0.0+r123","model":"yolo-nano","uptime_seconds":12.5,"checks":{"inference":"ok","model":"loaded"}}`
	tests := []struct {
		name        string
		out         string
		status, ver string
		ok          bool
	}{
		{"consul http output", full, "healthy", "2.0.0", true},
		{"unhealthy 503",
			`HTTP GET http://127.0.0.2:25871/health: 503 Service Unavailable Output: {"status":"unhealthy","version":"1.0.0","build":"1.0.0+t1","uptime_seconds":3.01,"checks":{"inference":"failed","model":"failed: inference engine stopped responding after 1s (fault EDGEINFER_FAULT_UNHEALTHY_AFTER)"}}`,
			"unhealthy", "1.0.0", true},
		{"dev version", `HTTP GET http://127.0.0.1:20394/health: 200 OK Output: {"status":"healthy","version":"0.0.0-dev","build":"0.0.0-dev"}`, "healthy", "0.0.0-dev", true},
		{"body alone", `{"status":"degraded","version":"3.1.4"}`, "degraded", "3.1.4", true},
		{"body with trailing newline", "{\"status\":\"healthy\",\"version\":\"1.2.3\"}\n", "healthy", "1.2.3", true},
		{"spaces around colons", `HTTP GET http://x/health: 200 OK Output: { "status" : "healthy", "version" : "1.0.0" }`, "healthy", "1.0.0", true},
		{"truncated after version", full[:strings.Index(full, `"build"`)+10], "healthy", "2.0.0", true},
		{"truncated inside version", full[:strings.Index(full, `"version":"2.`)+len(`"version":"2.`)], "healthy", "", true},
		{"truncated inside status", full[:strings.Index(full, `"status":"he`)+len(`"status":"he`)], "", "", false},
		{"consul truncation marker", full[:120] + " ... (Output truncated)", "healthy", "2.0.0", true},
		{"version only", `HTTP GET http://x/health: 200 OK Output: {"version":"5.0.0"}`, "", "5.0.0", true},
		{"top-level version wins over nested", `{"status":"healthy","checks":{"version":"9.9.9"},"version":"1.0.0"}`, "healthy", "1.0.0", true},
		{"connection refused", `Get "http://127.0.0.1:20394/health": dial tcp 127.0.0.1:20394: connect: connection refused`, "", "", false},
		{"timeout", `Get "http://127.0.0.1:20394/health": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`, "", "", false},
		{"plain text body", `HTTP GET http://x/health: 200 OK Output: OK`, "", "", false},
		{"json without the fields", `HTTP GET http://x/health: 200 OK Output: {"ok":true}`, "", "", false},
		{"json array", `HTTP GET http://x/health: 200 OK Output: [1,2]`, "", "", false},
		{"empty", "", "", "", false},
		{"serf output", "Agent alive and reachable", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, v, ok := ParseCheckOutput(tt.out)
			if st != tt.status || v != tt.ver || ok != tt.ok {
				t.Errorf("ParseCheckOutput(%q) = %q, %q, %v; want %q, %q, %v", tt.out, st, v, ok, tt.status, tt.ver, tt.ok)
			}
		})
	}
}

func TestCheckLayer(t *testing.T) {
	tests := []struct {
		name  string
		layer int
	}{
		{"fleetplan L1 connectivity", 1},
		{"fleetplan L2 system", 2},
		{"fleetplan L3 application", 3},
		{"fleetplan L4 functional", 4},
		{"fleetplan L3", 3},
		{"fleetplan L5 other", 0},
		{"fleetplan L0 x", 0},
		{"fleetplan L12 x", 0},
		{"fleetplan Lx", 0},
		{"fleetplan L", 0},
		{"fleetplan L3x", 0},
		{"serfHealth", 1},
		{`service: "edgeinfer" check`, 3},
		{`service: "edgeinfer-ctest" check`, 3},
		{"Serf Health Status", 0},
		{"my check", 0},
		{"", 0},
	}
	for _, tt := range tests {
		if got := CheckLayer(tt.name); got != tt.layer {
			t.Errorf("CheckLayer(%q) = %d, want %d", tt.name, got, tt.layer)
		}
	}
}

func FuzzParseCheckOutput(f *testing.F) {
	f.Add(`HTTP GET http://x/health: 200 OK Output: {"status":"healthy","version":"1.0.0"}`)
	f.Add(`{"status":"he`)
	f.Fuzz(func(t *testing.T, s string) {
		st, v, ok := ParseCheckOutput(s)
		if !ok && (st != "" || v != "") {
			t.Fatalf("not ok but fields: %q %q", st, v)
		}
	})
}
