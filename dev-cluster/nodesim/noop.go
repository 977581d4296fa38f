package main

import (
	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/nomad/client/serviceregistration"
)

// The simulated clients get no Consul agent of their own: services are
// registered in the catalog by the simulated allocations (services.go),
// not through Nomad's service client.

type noopCatalog struct{}

func (noopCatalog) Datacenters() ([]string, error) { return []string{"dc1"}, nil }
func (noopCatalog) Service(string, string, *consulapi.QueryOptions) ([]*consulapi.CatalogService, *consulapi.QueryMeta, error) {
	return nil, &consulapi.QueryMeta{}, nil
}

type noopProxies struct{}

func (noopProxies) Proxies() (map[string][]string, error) { return map[string][]string{}, nil }

type noopServiceReg struct{}

func (noopServiceReg) RegisterWorkload(*serviceregistration.WorkloadServices) error { return nil }
func (noopServiceReg) RemoveWorkload(*serviceregistration.WorkloadServices)         {}
func (noopServiceReg) UpdateWorkload(_, _ *serviceregistration.WorkloadServices) error {
	return nil
}
func (noopServiceReg) AllocRegistrations(string) (*serviceregistration.AllocRegistration, error) {
	return nil, nil
}
func (noopServiceReg) UpdateTTL(_, _, _, _ string) error { return nil }
