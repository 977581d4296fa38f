package agent

import (
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
)

const (
	svcHTTP    = "_nomad-task-a6d89dd9-3f76-80f0-0258-47a68c62fef1-group-edgeinfer-edgeinfer-http"
	svcMetrics = "_nomad-task-a6d89dd9-3f76-80f0-0258-47a68c62fef1-group-edgeinfer-edgeinfer-metrics-prom"
)

func agentState() (map[string]*consulapi.AgentService, map[string]*consulapi.AgentCheck) {
	services := map[string]*consulapi.AgentService{
		svcHTTP: {ID: svcHTTP, Service: "edgeinfer", Address: "127.0.0.1", Port: 20225,
			Tags: []string{"fleetplan-slot=blue", "fleetplan-version=1.0.0"}, Meta: map[string]string{"fleetplan_version": "1.0.0+r1"}},
		// Another port of the same group: tagged, but without the layer 3 check.
		svcMetrics: {ID: svcMetrics, Service: "edgeinfer-metrics", Address: "127.0.0.1", Port: 20226,
			Tags: []string{"fleetplan-slot=blue", "fleetplan-version=1.0.0"}},
		"_nomad-client-x": {ID: "_nomad-client-x", Service: "nomad-client", Port: 4646, Tags: []string{"http"}},
		"other":           {ID: "other", Service: "other", Port: 80},
	}
	checks := map[string]*consulapi.AgentCheck{
		"_nomad-check-1": {CheckID: "_nomad-check-1", Name: contract.CheckApplication, ServiceID: svcHTTP},
		"_nomad-check-2": {CheckID: "_nomad-check-2", Name: "Nomad Client HTTP Check", ServiceID: "_nomad-client-x"},
		"other-check":    {CheckID: "other-check", Name: contract.CheckApplication, ServiceID: "other"},
	}
	return services, checks
}

func TestFindInstances(t *testing.T) {
	services, checks := agentState()
	got := FindInstances(services, checks, func(s *consulapi.AgentService) string { return "app-of-" + s.Service })
	if len(got) != 1 {
		t.Fatalf("instances = %+v, want the health-port service only", got)
	}
	want := Instance{ServiceID: svcHTTP, Service: "edgeinfer", App: "app-of-edgeinfer", Address: "127.0.0.1", Port: 20225, Slot: "blue", Version: "1.0.0"}
	if got[0] != want {
		t.Errorf("instance = %+v, want %+v", got[0], want)
	}
	if got[0].HostPort() != "127.0.0.1:20225" {
		t.Errorf("HostPort = %s", got[0].HostPort())
	}
}

func TestAllocIDOf(t *testing.T) {
	for id, want := range map[string]string{
		svcHTTP: "a6d89dd9-3f76-80f0-0258-47a68c62fef1",
		"_nomad-task-a6d89dd9-3f76-80f0-0258-47a68c62fef1": "a6d89dd9-3f76-80f0-0258-47a68c62fef1",
		"_nomad-task-short": "",
		"_nomad-client-x":   "",
		"edgeinfer-1":       "",
		"_nomad-task-a6d89dd9-3f76-80f0-0258-47a68c62fef1x": "",
	} {
		if got := allocIDOf(id); got != want {
			t.Errorf("allocIDOf(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestDesiredChecks(t *testing.T) {
	services, checks := agentState()
	insts := FindInstances(services, checks, func(*consulapi.AgentService) string { return "edgeinfer" })
	plan := checkPlan{Base: "http://127.0.0.1:7474", Interval: 5 * time.Second, Timeout: 3 * time.Second, Thresholds: DefaultThresholds, HeartbeatTimeout: 30 * time.Second}

	// Without a config: node checks and the layer 3 check with defaults.
	got := plan.DesiredChecks(insts, nil)
	if len(got) != 3 {
		t.Fatalf("checks = %v", keys(got))
	}
	l3 := got[ServiceCheckID(3, svcHTTP)]
	if l3 == nil || l3.ID != "fleetplan-L3-"+svcHTTP || l3.Name != "fleetplan L3 version and metrics" || l3.ServiceID != svcHTTP ||
		l3.HTTP != "http://127.0.0.1:7474/v1/probe/application?service="+svcHTTP || l3.Interval != "5s" || l3.Timeout != "5s" {
		t.Errorf("layer 3 check = %+v", l3)
	}
	if !strings.Contains(l3.Notes, "GET /health") || !strings.Contains(l3.Notes, "fleetplan-version=1.0.0 fails") || !strings.Contains(l3.Notes, "defaults") {
		t.Errorf("layer 3 notes = %q", l3.Notes)
	}
	for id, name := range map[string]string{CheckIDConnectivity: "fleetplan L1 connectivity", CheckIDSystem: "fleetplan L2 system"} {
		c := got[id]
		if c == nil || c.Name != name || c.ServiceID != "" || c.Interval != "5s" || c.Timeout != "3s" || c.Notes == "" {
			t.Errorf("node check %s = %+v", id, c)
		}
	}
	if got[CheckIDConnectivity].HTTP != "http://127.0.0.1:7474/v1/probe/connectivity" || got[CheckIDSystem].HTTP != "http://127.0.0.1:7474/v1/probe/system" {
		t.Errorf("node check URLs: %s %s", got[CheckIDConnectivity].HTTP, got[CheckIDSystem].HTTP)
	}

	// With the policy's config: intervals and the layer 4 check.
	cfg, _ := NewAppConfig(testPolicy())
	got = plan.DesiredChecks(insts, map[string]*AppConfig{"edgeinfer": cfg})
	if len(got) != 4 {
		t.Fatalf("checks = %v", keys(got))
	}
	l3 = got[ServiceCheckID(3, svcHTTP)]
	if l3.Interval != "2s" || l3.Timeout != "3s" || !strings.Contains(l3.Notes, "GET /healthz") {
		t.Errorf("layer 3 check with config = %+v", l3)
	}
	l4 := got[ServiceCheckID(4, svcHTTP)]
	if l4 == nil || l4.Name != "fleetplan L4 functional" || l4.ServiceID != svcHTTP || l4.Interval != "5s" || l4.Timeout != "3s" ||
		l4.HTTP != "http://127.0.0.1:7474/v1/probe/functional?service="+svcHTTP || !strings.Contains(l4.Notes, "expects label = cat") {
		t.Errorf("layer 4 check = %+v", l4)
	}
	if fingerprint(l4) == fingerprint(l3) {
		t.Error("two checks share a fingerprint")
	}
	withStatus := *l4
	withStatus.Status = "passing"
	if fingerprint(&withStatus) != fingerprint(l4) {
		t.Error("the fingerprint depends on the status")
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestRelevantApps(t *testing.T) {
	a, b := &AppConfig{App: "a"}, &AppConfig{App: "b"}
	configs := map[string]*AppConfig{"a": a, "b": b}
	if got := relevantApps([]Instance{{App: "b"}, {App: "b"}, {App: "zzz"}}, configs); len(got) != 1 || got[0] != b {
		t.Errorf("relevant apps with an instance of b = %v", got)
	}
	if got := relevantApps(nil, configs); len(got) != 2 || got[0] != a {
		t.Errorf("relevant apps on an empty device = %v", got)
	}
}
