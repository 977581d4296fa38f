package registry

import (
	"context"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/blocking"
)

// blockingWait is how long one blocking query waits for a change.
const blockingWait = 5 * time.Minute

// Watch keeps the registry in step with the cluster until ctx ends. Two
// followers run blocking queries, never one request per device:
//
//	nomad:  GET /v1/nodes?index=N                      (every node's status, class, meta)
//	consul: GET /v1/health/state/any?index=N&filter=CheckID=="serfHealth"
//
// Each one, like consul-template's views, waits on the index of its last
// response, resets the index to 0 when it goes backwards (a server restored
// or replaced), ignores responses whose index did not move (the wait timed
// out) or whose content did not change for the registry (a fingerprint of
// the nodes' statuses: Consul's health index also moves with every
// application check), waits a jittered minimum interval between queries, and backs off
// exponentially (capped, with jitter) while queries fail, starting over at
// the first success. A moved index asks the sync loop for a sync:
//
//	Idle --index moved / resync tick--> Waiting (min interval since the last sync)
//	     --> Syncing --ok--> Idle
//	                 --error--> Backoff (grows per consecutive failure, capped) --> Syncing
//
// Requests arriving while a sync runs are folded into one sync after it.
// A resync every ResyncInterval refreshes heartbeats and catches anything
// missed. Watch returns ctx.Err() when ctx ends.
func (r *Registry) Watch(ctx context.Context) error {
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	go r.follow(ctx, "nomad", r.nomadIndex, poke)
	go r.follow(ctx, "consul", r.consulIndex, poke)

	resync := time.NewTicker(r.resync)
	defer resync.Stop()
	timing, clk := r.timing(), blocking.Clock{}
	var last time.Time
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-trigger:
		case <-resync.C:
		}
		if wait := timing.Pause(clk, last); wait > 0 {
			if blocking.Sleep(ctx, wait) != nil {
				return ctx.Err()
			}
		}
		for {
			last = time.Now()
			events, err := r.Sync(ctx)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if r.onSync != nil {
				r.onSync(events, err)
			}
			for _, e := range events {
				r.logger.Info("registry event", "device", e.Name, "id", e.Device, "kind", e.Kind, "detail", e.Detail)
			}
			if err == nil {
				failures = 0
				break
			}
			failures++
			wait := timing.RetryIn(clk, failures)
			r.logger.Warn("registry sync failed", "error", err, "failures", failures, "retry_in", wait.Round(time.Millisecond))
			if blocking.Sleep(ctx, wait) != nil {
				return ctx.Err()
			}
		}
	}
}

// indexQuery runs one blocking query and returns the index of its response
// and a fingerprint of what the registry cares about in it.
type indexQuery func(ctx context.Context, waitIndex uint64) (index, fingerprint uint64, err error)

// nomadIndex follows the node list; the fingerprint covers every node's ID,
// status and modify index (which moves with its metadata and eligibility).
func (r *Registry) nomadIndex(ctx context.Context, waitIndex uint64) (uint64, uint64, error) {
	q := &nomadapi.QueryOptions{WaitIndex: waitIndex, WaitTime: blockingWait}
	nodes, meta, err := r.nomad.Nodes().List(q.WithContext(ctx))
	if err != nil {
		return 0, 0, err
	}
	parts := make([]string, 0, len(nodes))
	for _, n := range nodes {
		parts = append(parts, n.ID+"\x00"+n.Status+"\x00"+strconv.FormatUint(n.ModifyIndex, 10))
	}
	return meta.LastIndex, fingerprint(parts), nil
}

// consulIndex follows the serfHealth checks. Consul's index of the health
// state moves with every check of the datacenter (application checks
// included), while the filter only applies to the response, so the
// fingerprint of the nodes' serfHealth statuses tells the changes that
// matter from the others.
func (r *Registry) consulIndex(ctx context.Context, waitIndex uint64) (uint64, uint64, error) {
	q := r.serfQuery()
	q.WaitIndex, q.WaitTime = waitIndex, blockingWait
	checks, meta, err := r.consul.Health().State(consulapi.HealthAny, q.WithContext(ctx))
	if err != nil {
		return 0, 0, err
	}
	parts := make([]string, 0, len(checks))
	for _, c := range checks {
		parts = append(parts, c.Node+"\x00"+c.Status)
	}
	return meta.LastIndex, fingerprint(parts), nil
}

// fingerprint hashes a set of strings, whatever their order.
func fingerprint(parts []string) uint64 {
	slices.Sort(parts)
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0xff})
	}
	return h.Sum64()
}

// timing paces the followers and the sync loop: MinInterval between calls,
// and a backoff from MinInterval up to MaxBackoff while they fail.
func (r *Registry) timing() blocking.Timing {
	return blocking.Timing{MinInterval: r.minInterval, BackoffBase: r.minInterval, BackoffMax: r.maxBackoff, WaitTime: blockingWait}
}

// indexAnswer is what a follower learns from one response: the
// fingerprint, and whether the index went backwards.
type indexAnswer struct {
	fingerprint uint64
	reset       bool
}

// follow runs a blocking query with blocking.Loop and calls changed
// whenever its index moves and the fingerprint of the response changed, and
// after a reset.
func (r *Registry) follow(ctx context.Context, name string, query indexQuery, changed func()) {
	var last uint64
	l := blocking.New(blocking.Config{Name: name, Timing: r.timing(), Logger: r.logger.With("source", name)},
		func(ctx context.Context, waitIndex uint64) (indexAnswer, uint64, error) {
			index, fp, err := query(ctx, waitIndex)
			return indexAnswer{fingerprint: fp, reset: err == nil && index < waitIndex}, index, err
		},
		func(a indexAnswer) error {
			switch {
			case a.reset:
				// Start over: the next answer counts as a change too.
				last = 0
				changed()
			case a.fingerprint != last || a.fingerprint == 0:
				last = a.fingerprint
				changed()
			}
			return nil
		})
	_ = l.Run(ctx)
}
