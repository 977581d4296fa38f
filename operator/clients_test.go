package operator

import (
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// The -namespace flag (else NOMAD_NAMESPACE) names rollouts outside the
// default namespace; in the default namespace nothing changes.
func TestRolloutNameFollowsTheNamespace(t *testing.T) {
	t.Cleanup(func() { Configure(Settings{}) })
	t.Setenv("NOMAD_NAMESPACE", "")
	Configure(Settings{})
	if Namespace() != "default" || RolloutName("web") != "web" {
		t.Errorf("no namespace: %q, %q", Namespace(), RolloutName("web"))
	}
	t.Setenv("NOMAD_NAMESPACE", "team-b")
	if RolloutName("web") != "web.team-b" {
		t.Errorf("NOMAD_NAMESPACE=team-b: %q", RolloutName("web"))
	}
	Configure(Settings{NomadNamespace: "team-a"})
	ps := []*scheduler.Policy{{Name: "web"}, {Name: "db"}}
	QualifyPolicies(ps)
	if ps[0].Name != "web.team-a" || ps[1].Name != "db.team-a" {
		t.Errorf("-namespace team-a: %q, %q", ps[0].Name, ps[1].Name)
	}
	Configure(Settings{NomadNamespace: "default"})
	if RolloutName("web") != "web" {
		t.Errorf("-namespace default: %q", RolloutName("web"))
	}
}

// A flag overrides the environment; what no flag sets stays the
// environment's.
func TestSettingsOverrideTheEnvironment(t *testing.T) {
	t.Cleanup(func() { Configure(Settings{}) })
	t.Setenv("NOMAD_ADDR", "http://env:4646")
	t.Setenv("NOMAD_TOKEN", "env-token")
	t.Setenv("CONSUL_HTTP_ADDR", "env:8500")
	t.Setenv("CONSUL_HTTP_TOKEN", "env-consul-token")
	skip := true
	Configure(Settings{NomadAddress: "https://flag:4646", ConsulToken: "flag-token", ConsulSkipVerify: &skip})
	n := NomadConfig()
	if n.Address != "https://flag:4646" || n.SecretID != "env-token" {
		t.Errorf("Nomad: address %s, token from env %v", n.Address, n.SecretID == "env-token")
	}
	c := ConsulConfig()
	if c.Address != "env:8500" || c.Token != "flag-token" || !c.TLSConfig.InsecureSkipVerify {
		t.Errorf("Consul: address %s, token from flag %v, skip verify %v", c.Address, c.Token == "flag-token", c.TLSConfig.InsecureSkipVerify)
	}
}
