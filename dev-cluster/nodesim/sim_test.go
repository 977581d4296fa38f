// The tests link Nomad's client, whose helper/subproc panics in a test binary
// unless a nomad binary is on PATH: PATH=~/.cache/fleetplan/bin:$PATH go test .
package main

import (
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHealthPolicyBadAfter(t *testing.T) {
	p := &healthPolicy{badVersions: map[string]bool{"2.0.0": true}, badAfter: 2, started: map[string]map[string]int{}}
	if p.critical("a", "1.0.0") {
		t.Fatal("a release not named bad must be healthy")
	}
	want := []struct {
		dev  string
		crit bool
	}{{"a", false}, {"b", false}, {"c", true}, {"a", false}, {"d", true}, {"c", true}}
	for _, w := range want {
		if got := p.critical(w.dev, "2.0.0"); got != w.crit {
			t.Fatalf("critical(%s, 2.0.0) = %v, want %v (the first 2 devices that start the bad release stay healthy, for good)", w.dev, got, w.crit)
		}
	}
}

func TestNodeUUIDStable(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	a, b := nodeUUID("scale/scale-rpi-1"), nodeUUID("scale/scale-rpi-1")
	if a != b || !re.MatchString(a) {
		t.Fatalf("nodeUUID: %q and %q, want one UUID", a, b)
	}
	if nodeUUID("scale/scale-rpi-2") == a {
		t.Fatal("two names gave one node ID")
	}
}

func TestDeviceNamesAndAddresses(t *testing.T) {
	s := &simulator{cfg: simConfig{prefix: "sim"}, logger: hclog.NewNullLogger()}
	seen := map[string]bool{}
	for i := 0; i < 2000; i++ {
		d := newDevice(s, i)
		if seen[d.ip] || seen[d.name] {
			t.Fatalf("device %d: %s at %s is not unique", i, d.name, d.ip)
		}
		seen[d.ip], seen[d.name] = true, true
		if strings.HasPrefix(d.ip, "127.0.") {
			t.Fatalf("device %d at %s: 127.0.0.x is the dev cluster's", i, d.ip)
		}
	}
	if d := newDevice(s, 4); d.name != "sim-rpi-2" || d.class != "rpi" {
		t.Fatalf("device 4 is %s (%s), want sim-rpi-2 (rpi: classes round-robin like the dev cluster's)", d.name, d.class)
	}
}

func TestCheckOutputLooksLikeConsulHTTPCheck(t *testing.T) {
	out := checkOutput("127.1.0.1", 20001, "health", "500 Internal Server Error", "unhealthy", "2.0.0")
	want := `HTTP GET http://127.1.0.1:20001/health: 500 Internal Server Error Output: {"status":"unhealthy","version":"2.0.0"}`
	if out != want {
		t.Fatalf("checkOutput = %q, want %q", out, want)
	}
}

func TestPathClass(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/node/4f1b6c3e-7a55-4f6b-9c1e-0d2a3b4c5d6e": "GET /v1/node/*",
		"/v1/kv/fleetplan/rollouts/simapp/state":        "GET /v1/kv/fleetplan",
		"/v1/client/metadata":                           "GET /v1/client/metadata",
	} {
		if got := pathClass(httptest.NewRequest("GET", in, nil)); got != want {
			t.Errorf("pathClass(%s) = %q, want %q", in, got, want)
		}
	}
}
