package agent

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
)

// DefaultSummaryJitter bounds the random delay before an agent answers a
// summary request (the fleet's agents do not all write at once).
const DefaultSummaryJitter = 2 * time.Second

// summaryRetry is how long after a failed summary write the agent tries
// again.
const summaryRetry = 5 * time.Second

// statusChanged asks for a summary of app (a layer's status changed).
func (a *Agent) statusChanged(app string) {
	a.sumMu.Lock()
	a.sumChanged[app] = true
	a.sumMu.Unlock()
	a.pokeSummaries()
}

func (a *Agent) pokeSummaries() {
	select {
	case a.sumPoke <- struct{}{}:
	default:
	}
}

// summaryLoop writes the device summaries (contract.Summary): for each
// application with an instance here, once per new summary request of its
// config (after a random delay of at most Config.SummaryJitter), and on a
// change of a layer's status. One KV key per write.
func (a *Agent) summaryLoop(ctx context.Context) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.sumPoke:
		case <-retry.C:
		}
		requests, changed := a.dueSummaries()
		if len(requests) > 0 && a.cfg.SummaryJitter > 0 {
			d := time.Duration(rand.Int64N(int64(a.cfg.SummaryJitter) + 1))
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		failed := false
		for _, app := range sortedKeys(requests) {
			if err := a.writeSummary(ctx, app, requests[app], "request"); err != nil {
				failed = true
				continue
			}
			a.sumMu.Lock()
			a.sumAnswered[app] = requests[app]
			delete(a.sumChanged, app) // the answer carries the statuses
			a.sumMu.Unlock()
		}
		rechecks := a.dueRechecks()
		for _, app := range sortedKeys(rechecks) {
			a.recheck(ctx, app)
			id := rechecks[app]
			if err := a.writeSummaryWindow(ctx, app, id, "recheck", false); err != nil {
				failed = true
				continue
			}
			a.sumMu.Lock()
			a.rechecked[app] = id
			delete(a.sumChanged, app)
			a.sumMu.Unlock()
		}
		for _, app := range sortedKeys(changed) {
			if _, done := requests[app]; done {
				continue
			}
			if err := a.writeSummary(ctx, app, "", "status"); err != nil {
				failed = true
				a.sumMu.Lock()
				a.sumChanged[app] = true
				a.sumMu.Unlock()
			}
		}
		if failed && ctx.Err() == nil {
			retry.Reset(summaryRetry)
		}
	}
}

// dueSummaries are the applications with an instance here whose config
// names a request not answered yet (app -> request ID), and those whose
// layer status changed (taken).
func (a *Agent) dueSummaries() (requests map[string]string, changed map[string]bool) {
	apps := a.meas.apps()
	a.mu.RLock()
	configs := a.configs
	a.mu.RUnlock()
	requests, changed = map[string]string{}, map[string]bool{}
	a.sumMu.Lock()
	defer a.sumMu.Unlock()
	for _, app := range apps {
		if c := configs[app]; c != nil && c.SummaryRequest != "" && a.sumAnswered[app] != c.SummaryRequest {
			requests[app] = c.SummaryRequest
		}
		if a.sumChanged[app] {
			changed[app] = true
			delete(a.sumChanged, app)
		}
	}
	return requests, changed
}

// writeSummary writes app's summary on this device to KV; a request's
// answer starts a new window.
func (a *Agent) writeSummary(ctx context.Context, app, request, cause string) error {
	return a.writeSummaryWindow(ctx, app, request, cause, request != "")
}

// writeSummaryWindow writes app's summary, starting a new window when
// reset.
func (a *Agent) writeSummaryWindow(ctx context.Context, app, request, cause string, reset bool) error {
	node := a.nodeName()
	s, ok := a.meas.summary(app, node, request, a.now(), reset)
	if !ok {
		return nil
	}
	b, err := contract.EncodeSummary(s)
	if err != nil {
		a.metrics.summary(cause, err)
		a.log.Warn("cannot encode a device summary", "app", app, "error", err)
		return err
	}
	key := contract.SummaryKey(a.cfg.SummaryPrefix, app, node)
	wctx, cancel := context.WithTimeout(ctx, a.cfg.CheckTimeout)
	defer cancel()
	_, err = a.consul.KV().Put(&consulapi.KVPair{Key: key, Value: b}, (&consulapi.WriteOptions{}).WithContext(wctx))
	a.metrics.summary(cause, err)
	if err != nil {
		err = fmt.Errorf("writing the summary of %s on %s to Consul KV %s (the agent's token needs key write on %s): %w", app, node, key, contract.SummaryFolder(a.cfg.SummaryPrefix, app), err)
		a.log.Warn("summary write failed; retrying", "app", app, "request", request, "error", err, "retry_in", summaryRetry)
		return err
	}
	a.log.Debug("wrote the device summary", "app", app, "request", request, "cause", cause, "key", key, "bytes", len(b))
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
