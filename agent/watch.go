package agent

import (
	"context"
	"fmt"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/internal/blocking"
)

// Timing tunes the agent's blocking queries and retries.
type Timing = blocking.Timing

// DefaultTiming suits a device: few calls, quick recovery. A blocking
// query that sees no change is asked again after WaitTime: 10 minutes,
// Consul's longest (max_query_time); Nomad's servers answer theirs after
// at most 5. Per 1,000 devices that is ~1.7 requests/s for the KV folder
// and ~3.3/s for the node, when nothing changes.
var DefaultTiming = Timing{
	MinInterval: time.Second,
	BackoffBase: time.Second,
	BackoffMax:  30 * time.Second,
	WaitTime:    10 * time.Minute,
}

// follow runs one blocking query until ctx ends, the way blocking.Loop
// does (wait index from the last answer, reset when it goes backwards, a
// jittered minimum interval, a capped backoff while it fails). fetch keeps
// what it read; changed is called after each fetch that brought news (the
// first one always does).
func follow(ctx context.Context, logger hclog.Logger, t Timing, fetch func(ctx context.Context, waitIndex uint64) (uint64, error), changed func()) {
	l := blocking.New(blocking.Config{Timing: t, Logger: logger},
		func(ctx context.Context, waitIndex uint64) (struct{}, uint64, error) {
			index, err := fetch(ctx, waitIndex)
			return struct{}{}, index, err
		},
		func(struct{}) error {
			changed()
			return nil
		})
	_ = l.Run(ctx)
}

// poke asks for a reconciliation (coalesced).
func (a *Agent) poke() {
	select {
	case a.trigger <- struct{}{}:
	default:
	}
}

// fetchConfigs is the KV folder's blocking query.
func (a *Agent) fetchConfigs(ctx context.Context, waitIndex uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: waitIndex, WaitTime: a.cfg.Timing.WaitTime}).WithContext(ctx)
	pairs, meta, err := a.consul.KV().List(a.cfg.KVPrefix+"/", q)
	if err != nil {
		return 0, fmt.Errorf("reading Consul KV %s/: %w", a.cfg.KVPrefix, err)
	}
	configs, errs := decodeAppConfigs(a.cfg.KVPrefix, pairs)
	for _, e := range errs {
		a.log.Warn("ignoring an application config", "error", e)
	}
	a.mu.Lock()
	a.configs = configs
	a.mu.Unlock()
	a.kvOnce.Do(func() { close(a.kvReady) })
	return meta.LastIndex, nil
}

// fetchServices is the blocking query on this device's services, asked of
// the device's own Consul agent (/v1/agent/services, hash-based blocking):
// it returns when a service is registered or deregistered here, and the
// agent answers it from its local state, so the Consul servers see nothing
// of it. The content hash is turned into an index for follow: it moves
// when the hash does.
func (a *Agent) fetchServices(ctx context.Context, waitIndex uint64) (uint64, error) {
	a.svcMu.Lock()
	hash, index := a.svcHash, a.svcIndex
	a.svcMu.Unlock()
	q := &consulapi.QueryOptions{}
	if waitIndex != 0 && waitIndex == index && hash != "" {
		q.WaitHash, q.WaitTime = hash, a.cfg.Timing.WaitTime
	}
	var services map[string]*consulapi.AgentService
	meta, err := a.consul.Raw().Query("/v1/agent/services", &services, q.WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("reading the services of the local Consul agent: %w", err)
	}
	a.svcMu.Lock()
	defer a.svcMu.Unlock()
	if meta.LastContentHash == "" || meta.LastContentHash != a.svcHash {
		// No hash (an agent too old for hash blocking) counts as news:
		// follow's minimum interval paces the loop then.
		a.svcHash = meta.LastContentHash
		a.svcIndex++
	}
	return a.svcIndex, nil
}
