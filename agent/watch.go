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

// DefaultTiming suits a device: few calls, quick recovery.
var DefaultTiming = Timing{
	MinInterval: time.Second,
	BackoffBase: time.Second,
	BackoffMax:  30 * time.Second,
	WaitTime:    5 * time.Minute,
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

// fetchCatalog is the blocking query on this node's catalog entry: it
// returns when a service is registered or deregistered here.
func (a *Agent) fetchCatalog(ctx context.Context, waitIndex uint64) (uint64, error) {
	q := (&consulapi.QueryOptions{WaitIndex: waitIndex, WaitTime: a.cfg.Timing.WaitTime}).WithContext(ctx)
	_, meta, err := a.consul.Catalog().Node(a.nodeName(), q)
	if err != nil {
		return 0, fmt.Errorf("reading catalog node %s: %w", a.nodeName(), err)
	}
	return meta.LastIndex, nil
}
