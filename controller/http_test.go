package controller

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// testService is a service whose Consul answers /v1/status/leader with
// leader (a 500 when "").
func testService(t *testing.T, leader string) *Service {
	t.Helper()
	consul := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/status/leader" && leader != "" {
			_ = json.NewEncoder(w).Encode(leader)
			return
		}
		http.Error(w, "no cluster leader", http.StatusInternalServerError)
	}))
	t.Cleanup(consul.Close)
	cfg := consulapi.DefaultConfig()
	cfg.Address = strings.TrimPrefix(consul.URL, "http://")
	cc, err := consulapi.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	op := &operator.Operator{Consul: cc, Store: store.New(cc, store.Options{})}
	return New(Config{Operator: op, Name: "test-instance"})
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestHealthEndpoint(t *testing.T) {
	s := testService(t, "10.0.0.1:8300")
	code, body := get(t, s.Handler(), "/v1/health")
	var h Health
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("health body %q: %v", body, err)
	}
	if code != http.StatusOK || h.Role != RoleStandby || h.Instance != "test-instance" || h.PID == 0 {
		t.Errorf("standby health: %d %+v", code, h)
	}
	s.setRole(RoleLeader)
	s.info("hello", func(i *RolloutInfo) { i.Version, i.Phase, i.State = "2.0.0", "WAVE", store.RequestAccepted })
	code, body = get(t, s.Handler(), "/v1/health")
	h = Health{}
	_ = json.Unmarshal([]byte(body), &h)
	if code != http.StatusOK || h.Role != RoleLeader || len(h.Rollouts) != 1 || h.Rollouts[0].Rollout != "hello" || h.Rollouts[0].Phase != "WAVE" {
		t.Errorf("leader health: %d %s", code, body)
	}
}

func TestHealthEndpointWithoutConsul(t *testing.T) {
	s := testService(t, "")
	code, body := get(t, s.Handler(), "/v1/health")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"role":"standby"`) {
		t.Fatalf("health without Consul: %d %s, want 503 with the role", code, body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	s := testService(t, "10.0.0.1:8300")
	m := s.Metrics()
	s.setRole(RoleLeader)
	m.LockHeld("hello", true)
	m.Event(scheduler.Event{Rollout: "hello", Phase: scheduler.PhaseWave, Action: "switch", Outcome: "intent"})
	m.Event(scheduler.Event{Rollout: "hello", Phase: scheduler.PhaseWave, Action: "switch", Outcome: "ok"})
	m.Event(scheduler.Event{Rollout: "hello", Phase: scheduler.PhaseWave, Action: "switch", Outcome: "ok"})
	m.Event(scheduler.Event{Rollout: "hello", Phase: scheduler.PhaseWave, Action: "decision:gate-passed", Outcome: "ok"})
	m.Event(scheduler.Event{Rollout: "other", Phase: scheduler.PhaseCanary, Action: "decision:rollback", Outcome: "ok"})
	m.APIError("nomad")
	code, body := get(t, s.Handler(), "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		"fleetplan_controller_leader 1",
		`fleetplan_controller_device_switches_total{action="switch",outcome="ok"} 2`,
		`fleetplan_controller_gate_verdicts_total{verdict="passed"} 1`,
		`fleetplan_controller_gate_verdicts_total{verdict="rollback"} 1`,
		"fleetplan_controller_rollbacks_total 1",
		`fleetplan_controller_api_errors_total{api="nomad"} 1`,
		`fleetplan_controller_lock_held{rollout="hello"} 1`,
		`fleetplan_controller_rollouts{phase="WAVE"} 1`,
		`fleetplan_controller_rollouts{phase="CANARY"} 1`,
		`fleetplan_controller_rollout_phase_seconds{phase="WAVE",rollout="hello"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `outcome="intent"`) {
		t.Error("intents are counted as switches")
	}
	s.setRole(RoleStandby)
	if _, body := get(t, s.Handler(), "/metrics"); !strings.Contains(body, "fleetplan_controller_leader 0") {
		t.Error("a standby reports itself leader")
	}
}
