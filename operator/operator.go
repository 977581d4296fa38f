package operator

import (
	"context"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/audit"
	"github.com/fleetplan/fleetplan/registry"
	"github.com/fleetplan/fleetplan/store"
)

// Operator holds the clients and the store the commands work with.
type Operator struct {
	Nomad  *nomadapi.Client
	Consul *consulapi.Client
	Store  *store.Consul
	Log    hclog.Logger
}

// Connect builds the Nomad and Consul clients from the settings (the
// command line's flags) and the standard environment (NOMAD_ADDR,
// NOMAD_TOKEN, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, TLS variables), checks
// that both answer, and opens the store under the settings' KV prefix.
func Connect(log hclog.Logger) (*Operator, error) {
	nc, err := NomadClient()
	if err != nil {
		return nil, err
	}
	cc, err := ConsulClient()
	if err != nil {
		return nil, err
	}
	return &Operator{Nomad: nc, Consul: cc, Log: log, Store: store.New(cc, store.Options{Prefix: CurrentSettings().KVPrefix, Logger: log})}, nil
}

// Lock takes the rollout's controller lock (waiting for it with wait), or
// explains who holds it.
func (o *Operator) Lock(ctx context.Context, app string, wait bool) (<-chan struct{}, func(), error) {
	holder := store.DefaultHolder()
	if wait {
		return o.Store.LockWait(ctx, app, holder)
	}
	lost, release, err := o.Store.Lock(ctx, app, holder)
	if held, ok := store.IsLockHeld(err); ok {
		return nil, nil, fmt.Errorf("rollout %q is being run by another controller (%s, since %s); follow it with `fleetplan status -watch %s`, or rerun with -wait",
			app, held.Holder, held.Since.Format(time.RFC3339), app)
	}
	return lost, release, err
}

// Registry returns the device registry under the store's KV root.
func (o *Operator) Registry() *registry.Registry {
	return registry.New(o.Nomad, o.Consul, registry.Options{Prefix: o.Store.Prefix(), Logger: o.Log})
}

// auditTrail returns the audit trail under the store's KV root.
func (o *Operator) auditTrail() *audit.Trail {
	return audit.New(o.Consul, o.Store.Layout().Audit())
}

// AuditRecords returns the audit records matching q, oldest first.
func (o *Operator) AuditRecords(ctx context.Context, q audit.Query) ([]audit.Record, error) {
	return o.auditTrail().List(ctx, q)
}

// OpenRegistry connects to the cluster for the registry commands and
// returns the registry with o (its Prefix is the KV root). With offline,
// Nomad is not contacted: the stored registry only needs Consul.
func OpenRegistry(o registry.Options, offline bool) (*registry.Registry, error) {
	cc, err := ConsulClient()
	if err != nil {
		return nil, err
	}
	var n *nomadapi.Client
	if offline {
		n, _, err = NomadClientNoCheck()
	} else {
		n, err = NomadClient()
	}
	if err != nil {
		return nil, err
	}
	return registry.New(n, cc, o), nil
}
