package agent

import (
	"context"
	"net/http"
	"net/url"
	"slices"
)

// dueRechecks are the applications whose config asks this node for a
// re-check not answered yet (app -> re-check ID).
func (a *Agent) dueRechecks() map[string]string {
	node := a.nodeName()
	a.mu.RLock()
	configs := a.configs
	a.mu.RUnlock()
	out := map[string]string{}
	a.sumMu.Lock()
	defer a.sumMu.Unlock()
	for app, c := range configs {
		if c == nil || c.Recheck == nil || c.Recheck.ID == "" || a.rechecked[app] == c.Recheck.ID {
			continue
		}
		if slices.Contains(c.Recheck.Nodes, node) {
			out[app] = c.Recheck.ID
		}
	}
	return out
}

// recheck runs the application's layer 2-4 probes on this device at once,
// as Consul runs them (the statuses and measurements they record feed the
// summary written next). Consul's own checks keep their interval: they
// show the same verdicts at their next run.
func (a *Agent) recheck(ctx context.Context, app string) {
	configs, insts := a.snapshot()
	cfg := configs[app]
	run := func(h http.HandlerFunc, path string, query url.Values) {
		u := &url.URL{Path: path, RawQuery: query.Encode()}
		r, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			a.log.Warn("re-check: building a probe request", "app", app, "path", path, "error", err)
			return
		}
		h(discardResponse{}, r)
	}
	run(a.handleSystem, PathSystem, nil)
	n := 0
	for _, in := range insts {
		if in.App != app || ctx.Err() != nil {
			continue
		}
		n++
		q := url.Values{"service": {in.ServiceID}}
		run(a.handleApplication, PathApplication, q)
		if cfg != nil && cfg.Functional != nil && cfg.Functional.Probe != "" {
			run(a.handleFunctional, PathFunctional, q)
		}
	}
	a.log.Info("re-checked on request", "app", app, "instances", n)
}

// discardResponse is the response writer of a re-check's probes: their
// verdicts are recorded by the handlers themselves.
type discardResponse struct{}

func (discardResponse) Header() http.Header         { return http.Header{} }
func (discardResponse) Write(b []byte) (int, error) { return len(b), nil }
func (discardResponse) WriteHeader(int)             {}
