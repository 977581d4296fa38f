// Package operator is the layer between fleetplan's commands and the
// engine: it builds the Nomad and Consul clients from the standard
// environment, assembles the rollout controller, carries out the operators'
// requests (approve, pause, resume, rollback) with their audit records, and
// loads rollout state for display. The commands keep the flags and the
// rendering.
package operator

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/scheduler"
)

// reachTimeout bounds the check that a cluster answers.
const reachTimeout = 10 * time.Second

// Settings are the command line's connection flags (-address, -token,
// -consul-address, ...). They override the standard environment, which the
// clients' DefaultConfig reads; an empty field (a nil bool) keeps what the
// environment says. Secrets given here are never logged.
type Settings struct {
	NomadAddress       string
	NomadToken         string
	NomadRegion        string
	NomadNamespace     string
	NomadCACert        string
	NomadClientCert    string
	NomadClientKey     string
	NomadTLSServerName string
	NomadSkipVerify    *bool

	ConsulAddress    string
	ConsulToken      string
	ConsulCACert     string
	ConsulClientCert string
	ConsulClientKey  string
	ConsulSkipVerify *bool

	// KVPrefix is the Consul KV root of fleetplan's state ("" is
	// store.DefaultPrefix).
	KVPrefix string
}

var (
	settingsMu sync.Mutex
	settings   Settings
)

// Configure sets the connection settings every client built afterwards
// uses: the command line sets them once, before its command connects.
func Configure(s Settings) {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	settings = s
}

// CurrentSettings returns what Configure set.
func CurrentSettings() Settings {
	settingsMu.Lock()
	defer settingsMu.Unlock()
	return settings
}

// NomadConfig is the Nomad client configuration: the environment, then
// the settings.
func NomadConfig() *nomadapi.Config {
	s := CurrentSettings()
	cfg := nomadapi.DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Address, s.NomadAddress)
	set(&cfg.SecretID, s.NomadToken)
	set(&cfg.Region, s.NomadRegion)
	set(&cfg.Namespace, s.NomadNamespace)
	if cfg.TLSConfig == nil {
		cfg.TLSConfig = &nomadapi.TLSConfig{}
	}
	set(&cfg.TLSConfig.CACert, s.NomadCACert)
	set(&cfg.TLSConfig.ClientCert, s.NomadClientCert)
	set(&cfg.TLSConfig.ClientKey, s.NomadClientKey)
	set(&cfg.TLSConfig.TLSServerName, s.NomadTLSServerName)
	if s.NomadSkipVerify != nil {
		cfg.TLSConfig.Insecure = *s.NomadSkipVerify
	}
	return cfg
}

// ConsulConfig is the Consul client configuration: the environment, then
// the settings.
func ConsulConfig() *consulapi.Config {
	s := CurrentSettings()
	cfg := consulapi.DefaultConfig()
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cfg.Address, s.ConsulAddress)
	if s.ConsulToken != "" {
		cfg.Token, cfg.TokenFile = s.ConsulToken, ""
	}
	set(&cfg.TLSConfig.CAFile, s.ConsulCACert)
	set(&cfg.TLSConfig.CertFile, s.ConsulClientCert)
	set(&cfg.TLSConfig.KeyFile, s.ConsulClientKey)
	if s.ConsulSkipVerify != nil {
		cfg.TLSConfig.InsecureSkipVerify = *s.ConsulSkipVerify
	}
	return cfg
}

// Namespace is the Nomad namespace the clients work in (the -namespace
// flag, else NOMAD_NAMESPACE), "default" when none is set.
func Namespace() string {
	if ns := NomadConfig().Namespace; ns != "" {
		return ns
	}
	return jobs.DefaultNamespace
}

// RolloutName is the rollout of the application app in the clients'
// namespace (jobs.QualifiedName): app itself in the default namespace.
func RolloutName(app string) string { return jobs.QualifiedName(app, Namespace()) }

// QualifyPolicies names the rollout of each policy after the clients'
// namespace (RolloutName), so that its jobs, the devices' slot metadata
// and its KV keys do not collide with the same application's in another
// namespace. In the default namespace nothing changes.
func QualifyPolicies(ps []*scheduler.Policy) {
	for _, p := range ps {
		p.Name = RolloutName(p.Name)
	}
}

// NomadClient builds a Nomad client from the settings and the standard environment
// (NOMAD_ADDR, NOMAD_TOKEN, NOMAD_REGION, NOMAD_NAMESPACE, NOMAD_CACERT,
// NOMAD_CAPATH, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY, NOMAD_TLS_SERVER_NAME,
// NOMAD_SKIP_VERIFY) and checks that Nomad answers and has a leader, so that
// an unreachable cluster is reported once, with its address.
func NomadClient() (*nomadapi.Client, error) {
	c, addr, err := NomadClientNoCheck()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), reachTimeout)
	defer cancel()
	var leader string
	if _, err := c.Raw().Query("/v1/status/leader", &leader, (&nomadapi.QueryOptions{}).WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("cannot reach Nomad at %s (set -address or NOMAD_ADDR, and -token/NOMAD_TOKEN and -ca-cert/NOMAD_CACERT if needed): %w", addr, unwrapTimeout(ctx, err))
	}
	if leader == "" {
		return nil, fmt.Errorf("no leader in Nomad at %s", addr)
	}
	return c, nil
}

// NomadClientNoCheck builds the Nomad client without contacting Nomad.
func NomadClientNoCheck() (*nomadapi.Client, string, error) {
	cfg := NomadConfig()
	c, err := nomadapi.NewClient(cfg)
	if err != nil {
		return nil, cfg.Address, fmt.Errorf("configuring the Nomad client for %s: %w", cfg.Address, err)
	}
	// NewClient configured TLS on this http.Client, which the client
	// shares: transient control-plane errors are retried under it.
	if cfg.HttpClient != nil {
		cfg.HttpClient.Transport = newRetryTransport(cfg.HttpClient.Transport)
	}
	return c, cfg.Address, nil
}

// ConsulClient builds a Consul client from the settings and the standard environment
// (CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE,
// CONSUL_HTTP_SSL, CONSUL_CACERT, CONSUL_CAPATH, CONSUL_CLIENT_CERT,
// CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY, ...) and
// checks that Consul answers and has a leader.
func ConsulClient() (*consulapi.Client, error) {
	cfg := ConsulConfig()
	addr := consulAddress(cfg)
	c, err := consulapi.NewClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("configuring the Consul client for %s: %w", addr, err)
	}
	if cfg.HttpClient != nil {
		cfg.HttpClient.Transport = newRetryTransport(cfg.HttpClient.Transport)
	}
	ctx, cancel := context.WithTimeout(context.Background(), reachTimeout)
	defer cancel()
	leader, err := c.Status().LeaderWithQueryOptions((&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("cannot reach Consul at %s (set -consul-address or CONSUL_HTTP_ADDR, and -consul-token/CONSUL_HTTP_TOKEN and -consul-ca-cert/CONSUL_CACERT if needed): %w", addr, unwrapTimeout(ctx, err))
	}
	if leader == "" {
		return nil, fmt.Errorf("no leader in Consul at %s", addr)
	}
	return c, nil
}

// consulAddress is the address the Consul client will use, with its scheme.
func consulAddress(cfg *consulapi.Config) string {
	addr := cfg.Address
	if strings.HasPrefix(addr, "unix://") || strings.Contains(addr, "://") {
		return addr
	}
	scheme := cfg.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + addr
}

// unwrapTimeout says "no answer within 10s" rather than a bare "context
// deadline exceeded".
func unwrapTimeout(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("no answer within %s", reachTimeout)
	}
	return err
}
