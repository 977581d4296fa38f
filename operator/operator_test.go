package operator

import (
	"errors"
	"fmt"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

func offlineOperator(t *testing.T) *Operator {
	t.Helper()
	nc, err := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := consulapi.NewClient(&consulapi.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return &Operator{Nomad: nc, Consul: cc, Log: hclog.NewNullLogger(), Store: store.New(cc, store.Options{})}
}

// A controller without health watching has no health source at all (not a
// typed nil), and every controller gets the store, the registry and a gate.
func TestControllerAssembly(t *testing.T) {
	o := offlineOperator(t)
	p := &scheduler.Policy{Name: "edgeinfer"}
	var seen []scheduler.Event
	ctl, stop := o.Controller(Run{Policy: p, Actor: "alice", OnEvent: func(e scheduler.Event) { seen = append(seen, e) }})
	defer stop()
	if ctl.Health != nil {
		t.Errorf("Health = %#v, want nil", ctl.Health)
	}
	if ctl.Policy != p || ctl.Cluster == nil || ctl.Store == nil || ctl.Registry == nil || ctl.Gate == nil || ctl.Actor != "alice" || ctl.Logger == nil {
		t.Errorf("controller %+v", ctl)
	}
	ctl.OnEvent(scheduler.Event{Action: "x"})
	if len(seen) != 1 {
		t.Error("OnEvent not passed through")
	}
	ctl, stop = o.Controller(Run{Policy: p, WatchHealth: true, AutoApprove: true})
	stop()
	if ctl.Health == nil || !ctl.AutoApprove {
		t.Errorf("controller %+v", ctl)
	}
}

func TestRefused(t *testing.T) {
	err := fmt.Errorf("approve: %w", refused("rollout %q is finished", "a"))
	if !IsRefused(err) || err.Error() != `approve: rollout "a" is finished` {
		t.Errorf("%v", err)
	}
	if IsRefused(errors.New("consul down")) {
		t.Error("any error is refused")
	}
}

func TestRecoveryPolicyAndDescribe(t *testing.T) {
	r := &scheduler.Rollout{App: "edgeinfer", Version: "2.0.0", Strategy: scheduler.StrategyCanaryRolling, Phase: scheduler.PhaseWave, Step: scheduler.StepSoaking}
	p := RecoveryPolicy(r)
	if p.Name != "edgeinfer" || p.Release.Version != "2.0.0" || p.Strategy != r.Strategy || p.MaxParallel != scheduler.DefaultMaxParallel {
		t.Errorf("policy %+v", p)
	}
	if d := Describe(r); d != string(scheduler.PhaseWave)+"/"+string(scheduler.StepSoaking) {
		t.Errorf("Describe = %q", d)
	}
}
