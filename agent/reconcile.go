package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
)

// reconcileLoop reconciles on every poke and resync, backing off after
// failures.
func (a *Agent) reconcileLoop(ctx context.Context) {
	select {
	case <-a.kvReady:
	case <-time.After(kvWait):
		a.log.Warn("no application configs from Consul KV yet; registering checks with defaults", "prefix", a.cfg.KVPrefix)
	case <-ctx.Done():
		return
	}
	resync := time.NewTicker(a.cfg.Resync)
	defer resync.Stop()
	retry := time.NewTimer(0) // the first reconciliation
	defer retry.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.trigger:
		case <-resync.C:
		case <-retry.C:
		}
		if err := a.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			d := blocking.Backoff(failures, a.cfg.Timing.BackoffBase, a.cfg.Timing.BackoffMax)
			a.log.Warn("reconciling checks failed", "error", err, "failures", failures, "retry_in", d)
			retry.Reset(d)
			continue
		}
		if failures > 0 {
			a.log.Info("reconciling checks recovered", "failures", failures)
			failures = 0
		}
	}
}

// reconcile makes the Consul agent's fleetplan-L* checks match the node
// and the fleetplan-managed instances on it.
func (a *Agent) reconcile(ctx context.Context) error {
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	services, err := a.consul.Agent().ServicesWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("listing the local Consul agent's services: %w", err)
	}
	checks, err := a.consul.Agent().ChecksWithFilterOpts("", q)
	if err != nil {
		return fmt.Errorf("listing the local Consul agent's checks: %w", err)
	}
	all := FindInstances(services, checks, func(s *consulapi.AgentService) string { return a.appOf(ctx, s) })
	insts := slices.DeleteFunc(slices.Clone(all), func(in Instance) bool { return !a.inScope(in.App) })
	// With -app, the checks of other applications' instances are not this
	// agent's to remove.
	foreign := map[string]bool{}
	for _, in := range all {
		if !a.inScope(in.App) {
			foreign[in.ServiceID] = true
		}
	}

	a.mu.Lock()
	configs := a.configs
	a.instances = map[string]Instance{}
	for _, in := range insts {
		a.instances[in.ServiceID] = in
	}
	base := a.base
	a.mu.Unlock()
	a.fn.forget(func(id string) bool { _, ok := services[id]; return ok })

	relevant := relevantApps(insts, configs)
	plan := checkPlan{
		Base:             base,
		ExecAllow:        a.cfg.ExecAllow,
		Interval:         a.cfg.CheckInterval,
		Timeout:          a.cfg.CheckTimeout,
		Thresholds:       strictestThresholds(relevant, a.cfg.Defaults),
		HeartbeatTimeout: StrictestHeartbeatTimeout(relevant),
	}
	want := plan.DesiredChecks(insts, configs)

	var errs []error
	for _, id := range slices.Sorted(maps.Keys(want)) {
		reg := want[id]
		fp := fingerprint(reg)
		cur, exists := checks[id]
		if exists && a.registered[id] == fp {
			continue
		}
		if exists {
			// Keep the current state across a definition change.
			reg.Status = cur.Status
		} else {
			// A new check starts as a warning without output ("not run
			// yet" to the gate), never as Consul's default critical: its
			// first result, critical too, would then be no status change,
			// and its output (the reason, the version) would reach the
			// servers only check_update_interval later (5 min by default).
			// From warning, any first result syncs at once.
			reg.Status = consulapi.HealthWarning
		}
		if err := a.consul.Agent().CheckRegisterOpts(reg, q); err != nil {
			errs = append(errs, fmt.Errorf("registering check %s: %w", id, err))
			continue
		}
		a.registered[id] = fp
		a.log.Info("registered check", "check", reg.Name, "id", id, "service", reg.ServiceID, "url", reg.HTTP)
	}
	for id, c := range checks {
		if !strings.HasPrefix(id, CheckIDPrefix) || want[id] != nil || foreign[c.ServiceID] {
			continue
		}
		if err := a.consul.Agent().CheckDeregisterOpts(id, q); err != nil {
			errs = append(errs, fmt.Errorf("deregistering check %s: %w", id, err))
			continue
		}
		delete(a.registered, id)
		a.log.Info("deregistered check", "check", c.Name, "id", id, "service", c.ServiceID)
	}
	for id := range a.registered {
		if want[id] == nil {
			delete(a.registered, id)
		}
	}
	a.metrics.forget(func(key string) bool {
		// The instance checks' keys name their service.
		_, id, ok := strings.Cut(key, "?service=")
		if !ok {
			return true
		}
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		return a.instances[id].ServiceID != "" || services[id] != nil
	})
	// An instance gone (a switch, a rollback): the application's summary
	// now speaks for the one left.
	for _, app := range a.meas.forget(func(id string) bool { _, ok := services[id]; return ok }) {
		a.statusChanged(app)
	}
	a.ensureService(ctx, services)
	if len(errs) > 0 {
		for range errs {
			a.metrics.consulError("check_register")
		}
		return errors.Join(errs...)
	}
	a.readyOnce.Do(func() { close(a.ready) })
	return nil
}

// DefaultServiceName is the Consul service the agent registers itself as.
const DefaultServiceName = "fleetplan-agent"

// Service tags and meta of the agent's own service: Prometheus' consul_sd
// keeps the targets tagged "prometheus" and reads the metrics path from
// the meta (relabel __meta_consul_service_metadata_metrics_path).
const (
	ServiceTagPrometheus = "prometheus"
	ServiceMetaPath      = "metrics_path"
)

// serviceID is the agent's own service ID ("" when it registers none).
func (a *Agent) serviceID() string {
	if a.cfg.ServiceName == "-" {
		return ""
	}
	if len(a.cfg.Apps) == 0 {
		return a.cfg.ServiceName
	}
	return a.cfg.ServiceName + "-" + strings.Join(slices.Sorted(slices.Values(a.cfg.Apps)), "-")
}

// serviceRegistration is the agent's own service on its local Consul
// agent, so that Prometheus' Consul discovery finds its /metrics.
func (a *Agent) serviceRegistration() *consulapi.AgentServiceRegistration {
	a.mu.RLock()
	base := a.base
	a.mu.RUnlock()
	host, port := base, 0
	if u, err := url.Parse(base); err == nil {
		h, p, err := net.SplitHostPort(u.Host)
		if err == nil {
			host = h
			port, _ = strconv.Atoi(p)
		}
	}
	return &consulapi.AgentServiceRegistration{
		ID:      a.serviceID(),
		Name:    a.cfg.ServiceName,
		Tags:    []string{ServiceTagPrometheus, "fleetplan"},
		Address: host,
		Port:    port,
		Meta:    map[string]string{ServiceMetaPath: PathPrometheus, "fleetplan_component": contract.ComponentAgent},
	}
}

// ensureService registers the agent's own service when the local Consul
// agent lacks it or holds another definition (idempotent: nothing is sent
// while it matches). A failure is logged and counted, and tried again at
// the next reconciliation; the checks do not depend on it.
func (a *Agent) ensureService(ctx context.Context, services map[string]*consulapi.AgentService) {
	id := a.serviceID()
	if id == "" {
		return
	}
	want := a.serviceRegistration()
	if cur := services[id]; cur != nil && cur.Service == want.Name && cur.Port == want.Port && cur.Address == want.Address &&
		slices.Equal(cur.Tags, want.Tags) && maps.Equal(cur.Meta, want.Meta) {
		a.service = id
		return
	}
	if err := a.consul.Agent().ServiceRegisterOpts(want, consulapi.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		a.metrics.consulError("service_register")
		a.log.Warn("cannot register the agent's own service (Prometheus' Consul discovery will not find it); retrying at the next reconciliation",
			"service", id, "error", err)
		return
	}
	a.service = id
	a.log.Info("registered the agent's service", "service", id, "address", want.Address, "port", want.Port, "metrics_path", PathPrometheus)
}

// inScope reports whether the agent registers checks for the application's
// instances (Config.Apps).
func (a *Agent) inScope(app string) bool {
	return len(a.cfg.Apps) == 0 || slices.Contains(a.cfg.Apps, app)
}

// relevantApps are the configs of the applications with an instance on the
// device, or every config when none has one (a device before its first
// install is judged by the fleet's policies).
func relevantApps(insts []Instance, configs map[string]*AppConfig) []*AppConfig {
	var out []*AppConfig
	seen := map[string]bool{}
	for _, in := range insts {
		if c := configs[in.App]; c != nil && !seen[in.App] {
			seen[in.App] = true
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return sortedApps(configs)
	}
	return out
}

// appOf names the application of an instance: the service meta
// fleetplan_app, else the job meta fleetplan_app of the allocation that
// registered it (asked once per allocation), else the service name.
func (a *Agent) appOf(ctx context.Context, s *consulapi.AgentService) string {
	if app := s.Meta[contract.MetaApp]; app != "" {
		return app
	}
	alloc := allocIDOf(s.ID)
	if alloc == "" {
		return s.Service
	}
	if app, ok := a.appCache[alloc]; ok {
		return app
	}
	al, _, err := a.nomad.Allocations().Info(alloc, (&nomadapi.QueryOptions{AllowStale: true}).WithContext(ctx))
	if err != nil {
		a.log.Warn("cannot read the allocation of a service; using the service name as the application", "service", s.ID, "error", err)
		return s.Service
	}
	app := s.Service
	if al.Job != nil && al.Job.Meta[contract.MetaApp] != "" {
		app = al.Job.Meta[contract.MetaApp]
	}
	a.appCache[alloc] = app
	if len(a.appCache) > 256 {
		clear(a.appCache)
		a.appCache[alloc] = app
	}
	return app
}

// deregisterAll removes every check the agent owns from the Consul agent.
func (a *Agent) deregisterAll() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	checks, err := a.consul.Agent().ChecksWithFilterOpts("", q)
	ids := slices.Collect(maps.Keys(a.registered))
	if err != nil {
		a.log.Warn("cannot list the checks at stop; deregistering the ones this agent registered", "error", err)
	} else {
		// Also the checks of an earlier run of this agent, and a check
		// whose registration answered an error after Consul took it:
		// every fleetplan check, or with -app those on the instances in
		// scope.
		a.mu.Lock()
		inScope := func(c *consulapi.AgentCheck) bool {
			if len(a.cfg.Apps) == 0 {
				return true
			}
			_, ok := a.instances[c.ServiceID]
			return ok && c.ServiceID != ""
		}
		for id, c := range checks {
			if strings.HasPrefix(id, CheckIDPrefix) && !slices.Contains(ids, id) && inScope(c) {
				ids = append(ids, id)
			}
		}
		a.mu.Unlock()
	}
	for _, id := range ids {
		if err := a.consul.Agent().CheckDeregisterOpts(id, q); err != nil {
			a.log.Warn("deregistering check at stop", "id", id, "error", err)
			continue
		}
		a.log.Debug("deregistered check at stop", "id", id)
	}
	clear(a.registered)
	if a.service != "" {
		if err := a.consul.Agent().ServiceDeregisterOpts(a.service, q); err != nil {
			a.log.Warn("deregistering the agent's service at stop", "service", a.service, "error", err)
		}
		a.service = ""
	}
}
