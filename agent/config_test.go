package agent

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

func testPolicy() *scheduler.Policy {
	return &scheduler.Policy{
		Name: "edgeinfer",
		Health: scheduler.Health{
			Connectivity: scheduler.Connectivity{HeartbeatTimeout: 30 * time.Second},
			System:       &scheduler.SystemHealth{MaxCPUPercent: 80, MaxTemperatureC: 70},
			Application: scheduler.Application{
				Port: "http", Path: "/healthz", Interval: 2 * time.Second, Timeout: time.Second, ExpectVersion: true,
			},
			Functional: &scheduler.Functional{
				Probe: "http-json", Path: "/infer", Input: `{"image":"cat.jpg"}`,
				Expect: map[string]string{"label": "cat"}, MaxLatency: 250 * time.Millisecond, Interval: 5 * time.Second,
			},
		},
	}
}

func TestAppConfigJSON(t *testing.T) {
	c, err := NewAppConfig(testPolicy())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"app":"edgeinfer","health_path":"/healthz","expect_version":true,"interval":"2s","timeout":"1s","system":{"max_cpu_percent":80,"max_temperature_c":70},"functional":{"probe":"http-json","path":"/infer","input":"{\"image\":\"cat.jpg\"}","expect":{"label":"cat"},"max_latency":"250ms","interval":"5s"},"heartbeat_timeout":"30s"}`
	if string(b) != want {
		t.Errorf("AppConfig JSON =\n%s\nwant\n%s", b, want)
	}
	var back AppConfig
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, c) {
		t.Errorf("round trip = %+v, want %+v", back, *c)
	}

	// A number is nanoseconds; bad text is an error.
	var d Duration
	if err := json.Unmarshal([]byte(`1500000000`), &d); err != nil || d.D() != 1500*time.Millisecond {
		t.Errorf("Duration from a number = %s, %v", d, err)
	}
	if err := json.Unmarshal([]byte(`"soon"`), &d); err == nil {
		t.Error("Duration from bad text: no error")
	}
	if _, err := NewAppConfig(&scheduler.Policy{}); err == nil {
		t.Error("NewAppConfig of a policy without a name: no error")
	}
	min, _ := NewAppConfig(&scheduler.Policy{Name: "x"})
	if min.HealthPath != DefaultHealthPath || min.System != nil || min.Functional != nil {
		t.Errorf("minimal config = %+v", min)
	}
}

func TestDecodeAppConfigs(t *testing.T) {
	good, _ := json.Marshal(AppConfig{App: "edgeinfer", HealthPath: "/health", ExpectVersion: true})
	pairs := consulapi.KVPairs{
		{Key: "fleetplan/agent/apps/edgeinfer", Value: good},
		{Key: "fleetplan/agent/apps/detector", Value: []byte(`{"expect_version":false}`)},
		{Key: "fleetplan/agent/apps/broken", Value: []byte(`{"interval":"soon"}`)},
		{Key: "fleetplan/agent/apps/", Value: nil},
		{Key: "fleetplan/agent/apps/x/nested", Value: good},
	}
	got, errs := decodeAppConfigs("fleetplan/agent/apps", pairs)
	if len(errs) != 1 {
		t.Errorf("errors = %v, want one (broken)", errs)
	}
	if len(got) != 2 || got["edgeinfer"].HealthPath != "/health" || got["detector"].App != "detector" || got["detector"].HealthPath != DefaultHealthPath {
		t.Errorf("configs = %+v", got)
	}
	if k := AppConfigKey("fleetplan/agent/apps/", "edgeinfer"); k != "fleetplan/agent/apps/edgeinfer" {
		t.Errorf("AppConfigKey = %q", k)
	}
}

// TestAppConfigRefusesHostPaths (I11): a path that could lead an agent to
// another host never reaches Consul KV.
func TestAppConfigRefusesHostPaths(t *testing.T) {
	p := testPolicy()
	p.Health.Application.Path = "@169.254.169.254/latest/meta-data"
	if _, err := NewAppConfig(p); err == nil || !strings.Contains(err.Error(), "health path") {
		t.Errorf("health path %q: %v", p.Health.Application.Path, err)
	}
	p = testPolicy()
	p.Health.Functional.Path = "//169.254.169.254/infer"
	if _, err := NewAppConfig(p); err == nil || !strings.Contains(err.Error(), "functional path") {
		t.Errorf("functional path %q: %v", p.Health.Functional.Path, err)
	}
}
