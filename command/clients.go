package command

import (
	"fmt"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// nomadClient builds a Nomad client from the standard environment
// (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_REGION, NOMAD_NAMESPACE, NOMAD_CACERT,
// NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_SKIP_VERIFY).
func nomadClient() (*nomadapi.Client, error) {
	cfg := nomadapi.DefaultConfig()
	c, err := nomadapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("configuring the Nomad client for %s: %w", cfg.Address, err)
	}
	return c, nil
}

// consulClient builds a Consul client from the standard environment
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_SSL, CONSUL_CACERT,
// CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, ...).
func consulClient() (*consulapi.Client, error) {
	cfg := consulapi.DefaultConfig()
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("configuring the Consul client for %s: %w", cfg.Address, err)
	}
	return c, nil
}
