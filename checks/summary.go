package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// SummaryRequestField is the field of an application's agent
// configuration (agent.AppConfig, JSON) that names the latest summary
// request: an agent that sees a new value answers with a fresh summary.
const SummaryRequestField = "summary_request"

// errNoAgentConfig: the application has no agent configuration.
var errNoAgentConfig = errors.New("no agent configuration")

// casAttempts bounds the check-and-set retries of a summary request when
// the agent configuration changes under it.
const casAttempts = 5

// Summaries implements scheduler.SummarySource: it writes a new request ID
// into the application's agent configuration (a check-and-set
// read-modify-write that keeps every other field as it is) and follows the
// application's summary folder with one blocking query until every device
// answered that request or ctx ends. Only devices whose agent writes
// summaries (one had a key in the folder when the request was made) are
// waited for. Devices that did not answer are missing from the result (no
// evidence). The error says what failed; the answers that came are
// returned with it.
func (w *Watcher) Summaries(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.DeviceSummary, error) {
	out := map[string]scheduler.DeviceSummary{}
	if r == nil || r.App == "" {
		return out, errors.New("summaries: the rollout names no application")
	}
	if len(devices) == 0 {
		return out, nil
	}
	id := r.ID + "-" + strconv.FormatInt(w.clk.Now().UnixNano(), 36)
	if err := w.requestSummaries(ctx, r.App, id); errors.Is(err, errNoAgentConfig) {
		// No agent is configured for the application: none writes
		// summaries, there is nobody to ask.
		w.logger.Debug("no summary requested", "app", r.App, "reason", err)
		return out, nil
	} else if err != nil {
		return out, fmt.Errorf("asking the device agents of %s for a summary: %w", r.App, err)
	}
	w.sumMu.Lock()
	if w.lastRequest == nil {
		w.lastRequest = map[string]summaryRequest{}
	}
	w.lastRequest[r.App] = summaryRequest{run: r.ID, id: id, at: w.clk.Now()}
	w.sumMu.Unlock()
	got, err := w.collectSummaries(ctx, r.App, id, devices)
	for k, s := range got {
		out[k] = deviceSummary(s)
	}
	return out, err
}

// requestSummaries sets the summary request of the application's agent
// configuration to id.
func (w *Watcher) requestSummaries(ctx context.Context, app, id string) error {
	return w.setAgentConfigField(ctx, app, SummaryRequestField, id)
}

// LatestSummary implements scheduler.SummaryReader: one read of the
// device's summary key, as the agent last wrote it (found is false when
// it wrote none).
func (w *Watcher) LatestSummary(ctx context.Context, r *scheduler.Rollout, d scheduler.DeviceRef) (scheduler.DeviceSummary, bool, error) {
	if r == nil || r.App == "" || d.Name == "" {
		return scheduler.DeviceSummary{}, false, nil
	}
	key := contract.SummaryKey(w.cfg.SummaryFolder, r.App, d.Name)
	value, _, found, err := w.src.GetKV(ctx, key)
	if err != nil {
		return scheduler.DeviceSummary{}, false, fmt.Errorf("reading the summary of %s on %s (%s): %w", r.App, d.Name, key, err)
	}
	if !found {
		return scheduler.DeviceSummary{}, false, nil
	}
	s, err := contract.DecodeSummary(value)
	if err != nil {
		return scheduler.DeviceSummary{}, false, fmt.Errorf("decoding the summary of %s on %s (%s): %w", r.App, d.Name, key, err)
	}
	return deviceSummary(s), true, nil
}

// RecheckField is the field of an application's agent configuration
// (agent.AppConfig, JSON) that asks the agents on some nodes for an
// immediate re-check: {"id": ..., "nodes": [...]}.
const RecheckField = "recheck"

// Recheck asks the device agents of app on the named devices to run the
// application's checks at once (the layer 2-4 probes, as Consul runs them)
// and answer with a fresh summary, and waits for the answers until ctx
// ends. Devices whose agent writes no summaries are not waited for; a
// device missing from the result did not answer (no evidence).
func (w *Watcher) Recheck(ctx context.Context, app string, devices []string) (map[string]contract.Summary, error) {
	if app == "" || len(devices) == 0 {
		return map[string]contract.Summary{}, errors.New("recheck: name an application and at least one device")
	}
	id := "recheck-" + strconv.FormatInt(w.clk.Now().UnixNano(), 36)
	rc := struct {
		ID    string   `json:"id"`
		Nodes []string `json:"nodes"`
	}{id, devices}
	if err := w.setAgentConfigField(ctx, app, RecheckField, rc); err != nil {
		return map[string]contract.Summary{}, fmt.Errorf("asking the device agents of %s for a re-check of %s: %w", app, strings.Join(devices, ", "), err)
	}
	refs := make([]scheduler.DeviceRef, len(devices))
	for i, d := range devices {
		refs[i] = scheduler.DeviceRef{Name: d}
	}
	return w.collectSummaries(ctx, app, id, refs)
}

// setAgentConfigField sets one field of the application's agent
// configuration, a check-and-set read-modify-write that keeps every other
// field as it is.
func (w *Watcher) setAgentConfigField(ctx context.Context, app, field string, v any) error {
	key := store.AgentConfigKey(w.cfg.AgentConfigFolder, app)
	for range casAttempts {
		value, index, found, err := w.src.GetKV(ctx, key)
		if err != nil {
			return fmt.Errorf("reading %s: %w", key, err)
		}
		if !found {
			return fmt.Errorf("%w at %s", errNoAgentConfig, key)
		}
		b, err := withField(value, field, v)
		if err != nil {
			return fmt.Errorf("the agent configuration at %s: %w", key, err)
		}
		ok, err := w.src.CASKV(ctx, key, b, index)
		if err != nil {
			return fmt.Errorf("writing %s: %w", key, err)
		}
		if ok {
			w.logger.Debug("agent configuration field set", "app", app, "field", field)
			return nil
		}
	}
	return fmt.Errorf("writing %s: it changed under %d check-and-set attempts; try again", key, casAttempts)
}

// withField sets one field of an agent configuration, keeping the fields
// it does not know.
func withField(config []byte, field string, value any) ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(config, &doc); err != nil {
		return nil, fmt.Errorf("decoding it as a JSON object: %w", err)
	}
	if doc == nil {
		doc = map[string]json.RawMessage{}
	}
	v, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	doc[field] = v
	return json.Marshal(doc)
}

// collectSummaries follows the summary folder until the devices answered
// request id or ctx ends.
func (w *Watcher) collectSummaries(ctx context.Context, app, id string, devices []scheduler.DeviceRef) (map[string]contract.Summary, error) {
	out := map[string]contract.Summary{}
	keyOf := map[string]string{} // node name or ID -> result key
	for _, d := range devices {
		k := d.ID
		if k == "" {
			k = d.Name
		}
		if d.Name != "" {
			keyOf[d.Name] = k
		}
		if d.ID != "" {
			keyOf[d.ID] = k
		}
	}
	folder := contract.SummaryFolder(w.cfg.SummaryFolder, app)
	var (
		index    uint64
		first    = true
		failures int
		lastErr  error
		// capable are the devices whose agents write summaries (a key in
		// the folder when the request was made).
		capable map[string]bool
	)
	for {
		pairs, got, err := blockingCall(w, func() ([]kvPair, uint64, error) {
			return w.src.ListKV(ctx, folder, query{index, w.cfg.WaitTime})
		})
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			failures++
			lastErr = err
			if serr := w.clk.Sleep(ctx, w.cfg.RetryIn(w.clk, failures)); serr != nil {
				break
			}
			continue
		}
		failures, lastErr = 0, nil
		next, changed := blocking.NextIndex(index, got, first)
		index, first = next, false
		if changed && capable == nil {
			// Only agents that write summaries are waited for: a device
			// whose agent never wrote one (an older agent, no agent)
			// would only make the gate wait for nothing.
			capable = map[string]bool{}
			for _, p := range pairs {
				if k, ok := keyOf[strings.TrimPrefix(p.Key, folder)]; ok {
					capable[k] = true
				}
			}
			if len(capable) == 0 {
				w.logger.Debug("no device agent of the application writes summaries", "app", app, "folder", folder)
				return out, nil
			}
		}
		if changed {
			for _, p := range pairs {
				s, err := contract.DecodeSummary(p.Value)
				if err != nil || s.Request != id {
					continue
				}
				node := s.Node
				if node == "" {
					node = strings.TrimPrefix(p.Key, folder)
				}
				if k, ok := keyOf[node]; ok {
					out[k] = s
				}
			}
		}
		if answeredAll(out, capable) {
			return out, nil
		}
	}
	if len(out) == 0 && lastErr != nil {
		return out, fmt.Errorf("reading the summaries in %s: %w", folder, lastErr)
	}
	return out, nil
}

// answeredAll reports whether every capable device answered.
func answeredAll(out map[string]contract.Summary, capable map[string]bool) bool {
	for k := range capable {
		if _, ok := out[k]; !ok {
			return false
		}
	}
	return true
}

// deviceSummary is the scheduler's view of a device summary.
func deviceSummary(s contract.Summary) scheduler.DeviceSummary {
	ds := scheduler.DeviceSummary{
		Version:         s.Version,
		Current:         schedulerMetrics(s.Current),
		Baseline:        schedulerMetrics(s.Baseline),
		BaselineVersion: s.BaselineVersion,
	}
	ds.AllocID = s.AllocID
	if len(s.Layers) > 0 {
		ds.Layers = make(map[string]string, len(s.Layers))
		ds.Reasons = make(map[string]string, len(s.Layers))
		for name, l := range s.Layers {
			ds.Layers[name] = l.Status
			if l.Reason != "" {
				ds.Reasons[name] = l.Reason
			}
		}
	}
	return ds
}

// schedulerMetrics converts the agent's measurement; nil when it measured
// nothing.
func schedulerMetrics(m *contract.Metrics) *scheduler.Metrics {
	if m == nil || !m.Measured() {
		return nil
	}
	out := &scheduler.Metrics{}
	if m.ErrorRate != nil {
		out.ErrorRate = *m.ErrorRate
	}
	if m.P95LatencyMS != nil {
		out.P95LatencyMS = *m.P95LatencyMS
	}
	if m.RSSMB != nil {
		out.MemoryMB = *m.RSSMB
	}
	if m.CPUPercent != nil {
		out.CPUPercent = *m.CPUPercent
	}
	return out
}
