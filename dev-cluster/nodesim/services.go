package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/nomad/structs"
)

// Job and service meta keys fleetplan sets on a slot job (its contract
// package; this module does not import fleetplan).
const (
	metaVersion = "fleetplan_version"
	// nomadTaskPrefix starts the service ID Nomad gives a task's service.
	nomadTaskPrefix = "_nomad-task-"
)

// consulConcurrency bounds the simulator's Consul calls in flight.
const consulConcurrency = 32

// healthPolicy decides the status of a device's service checks from the
// version it runs: a release named bad is critical on the devices that
// start it after the first badAfter of the fleet did (a defect that shows
// once a part of the fleet runs it), healthy everywhere else.
type healthPolicy struct {
	badVersions map[string]bool
	badAfter    int

	mu      sync.Mutex
	started map[string]map[string]int // version -> device -> ordinal
}

func (p *healthPolicy) critical(dev, version string) bool {
	if !p.badVersions[version] {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	byDev := p.started[version]
	if byDev == nil {
		byDev = map[string]int{}
		p.started[version] = byDev
	}
	n, ok := byDev[dev]
	if !ok {
		n = len(byDev)
		byDev[dev] = n
	}
	return n >= p.badAfter
}

// services registers the simulated allocations' Consul services in the
// Consul catalog on the device's node, as Nomad would through the device's
// own Consul agent, with the checks' statuses the health policy decides.
type services struct {
	consul *consulapi.Client
	dc     string
	health *healthPolicy
	logger hclog.Logger
	ctx    context.Context
	sem    chan struct{}

	// byAlloc: alloc ID -> registered service IDs.
	mu      sync.Mutex
	byAlloc map[string][]string

	registered   atomic.Int64
	deregistered atomic.Int64
	critical     atomic.Int64
	errors       atomic.Int64
}

// retry calls f until it succeeds or the simulator stops. At most
// consulConcurrency calls are in flight: Consul accepts 200 HTTP
// connections per client address, and every device shares this process's.
func (s *services) retry(what string, f func() error) {
	backoff := 250 * time.Millisecond
	for {
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		err := f()
		<-s.sem
		if err == nil {
			return
		}
		s.errors.Add(1)
		s.logger.Debug("Consul catalog call failed; retrying", "what", what, "error", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// register registers the allocation's Consul services (group and task
// services) with their checks.
func (s *services) register(d *device, alloc *structs.Allocation) {
	tg := alloc.Job.LookupTaskGroup(alloc.TaskGroup)
	if tg == nil {
		return
	}
	version := alloc.Job.Meta[metaVersion]
	crit := s.health.critical(d.name, version)
	type svc struct {
		owner string
		s     *structs.Service
	}
	var all []svc
	for _, sv := range tg.Services {
		all = append(all, svc{"group-" + tg.Name, sv})
	}
	for _, t := range tg.Tasks {
		for _, sv := range t.Services {
			all = append(all, svc{t.Name, sv})
		}
	}
	var ids []string
	for _, x := range all {
		if x.s.Provider != "" && x.s.Provider != structs.ServiceProviderConsul {
			continue
		}
		id := fmt.Sprintf("%s%s-%s-%s-%s", nomadTaskPrefix, alloc.ID, x.owner, x.s.Name, x.s.PortLabel)
		port := 0
		if alloc.AllocatedResources != nil {
			for _, p := range alloc.AllocatedResources.Shared.Ports {
				if p.Label == x.s.PortLabel {
					port = p.Value
				}
			}
		}
		reg := &consulapi.CatalogRegistration{
			ID:             d.id,
			Node:           d.name,
			Address:        d.ip,
			Datacenter:     s.dc,
			SkipNodeUpdate: true,
			Service: &consulapi.AgentService{
				ID:      id,
				Service: x.s.Name,
				Tags:    x.s.Tags,
				Meta:    x.s.Meta,
				Port:    port,
				Address: d.ip,
			},
		}
		for i, c := range x.s.Checks {
			status, out := consulapi.HealthPassing, checkOutput(d.ip, port, c.Path, "200 OK", "healthy", version)
			if crit {
				status, out = consulapi.HealthCritical, checkOutput(d.ip, port, c.Path, "500 Internal Server Error", "unhealthy", version)
			}
			reg.Checks = append(reg.Checks, &consulapi.HealthCheck{
				Node:        d.name,
				CheckID:     fmt.Sprintf("_nomad-check-%s-%s-%d", alloc.ID, x.s.Name, i),
				Name:        c.Name,
				Status:      status,
				Output:      out,
				ServiceID:   id,
				ServiceName: x.s.Name,
				Type:        c.Type,
			})
		}
		s.retry("register service "+id+" on "+d.name, func() error {
			_, err := s.consul.Catalog().Register(reg, (&consulapi.WriteOptions{}).WithContext(s.ctx))
			return err
		})
		ids = append(ids, id)
		s.registered.Add(1)
		if crit {
			s.critical.Add(1)
		}
	}
	s.mu.Lock()
	old := s.byAlloc[alloc.ID]
	s.byAlloc[alloc.ID] = ids
	s.mu.Unlock()
	// An in-place update may have dropped a service.
	for _, o := range old {
		keep := false
		for _, id := range ids {
			keep = keep || id == o
		}
		if !keep {
			s.deregisterID(d, o)
		}
	}
}

// checkOutput is what Consul records for an HTTP check of the application's
// health endpoint.
func checkOutput(ip string, port int, path, status, health, version string) string {
	if path == "" {
		path = "/health"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return fmt.Sprintf("HTTP GET http://%s:%d%s: %s Output: {\"status\":%q,\"version\":%q}", ip, port, path, status, health, version)
}

func (s *services) deregister(d *device, allocID string) {
	s.mu.Lock()
	ids := s.byAlloc[allocID]
	delete(s.byAlloc, allocID)
	s.mu.Unlock()
	for _, id := range ids {
		s.deregisterID(d, id)
	}
}

func (s *services) deregisterID(d *device, id string) {
	s.retry("deregister service "+id+" on "+d.name, func() error {
		_, err := s.consul.Catalog().Deregister(&consulapi.CatalogDeregistration{
			Node: d.name, ServiceID: id, Datacenter: s.dc,
		}, (&consulapi.WriteOptions{}).WithContext(s.ctx))
		return err
	})
	s.deregistered.Add(1)
}
