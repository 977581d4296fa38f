package checks

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

var _ scheduler.ComparisonSource = (*Watcher)(nil)

// Samples implements scheduler.ComparisonSource: an a-b comparison's
// measurements, by device ID, from the device summaries (contract.Summary)
// the agents wrote. The comparison follows the last gate of group B, which
// already asked every agent of the application for a summary: the answers
// to that request close windows that cover the hold, so they are used
// (collected again for all devices, group A included, until they all
// answered or scheduler.SummaryWait passed). Asking again would start new
// windows of a few seconds. When this run made no request in the last
// 3 × scheduler.SummaryWait, Samples makes one (its answers' windows start
// at the previous request's answers). A device without an answer, or whose answer has no
// window, is missing: no evidence, never a pass (the comparison then says
// "not enough data").
func (w *Watcher) Samples(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.GroupSample, error) {
	out := map[string]scheduler.GroupSample{}
	if r == nil || r.App == "" {
		return out, errors.New("comparison samples: the rollout names no application")
	}
	if len(devices) == 0 {
		return out, nil
	}
	w.sumMu.Lock()
	last, ok := w.lastRequest[r.App]
	w.sumMu.Unlock()
	id := last.id
	// Reuse only the request of the gate just before (a gate without
	// devices to ask makes none: an older request's answers would be
	// stale, written before the hold began).
	if !ok || last.run != r.ID || w.clk.Now().Sub(last.at) > 3*scheduler.SummaryWait {
		id = r.ID + "-ab-" + strconv.FormatInt(w.clk.Now().UnixNano(), 36)
		if err := w.requestSummaries(ctx, r.App, id); errors.Is(err, errNoAgentConfig) {
			return out, nil // no agent writes summaries: no evidence
		} else if err != nil {
			return out, fmt.Errorf("asking the device agents of %s for the comparison's summaries: %w (%w)", r.App, err, scheduler.ErrControlPlane)
		}
		w.sumMu.Lock()
		if w.lastRequest == nil {
			w.lastRequest = map[string]summaryRequest{}
		}
		w.lastRequest[r.App] = summaryRequest{run: r.ID, id: id, at: w.clk.Now()}
		w.sumMu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, scheduler.SummaryWait)
	defer cancel()
	got, err := w.collectSummaries(wctx, r.App, id, devices)
	for k, s := range got {
		if s.App != "" && s.App != r.App {
			continue
		}
		if g, ok := sampleOf(k, s); ok {
			out[k] = g
		}
	}
	if err != nil && len(out) == 0 {
		return out, fmt.Errorf("reading the comparison's summaries of %s: %w (%w)", r.App, err, scheduler.ErrControlPlane)
	}
	return out, nil
}

// sampleOf converts a summary's window; false when it has none.
func sampleOf(id string, sum contract.Summary) (scheduler.GroupSample, bool) {
	w := sum.Window
	if w == nil {
		return scheduler.GroupSample{}, false
	}
	g := scheduler.GroupSample{
		Device:        id,
		Version:       sum.Version,
		At:            sum.At,
		LatencyMS:     append([]float64(nil), w.LatencyMS...),
		ProbeOK:       w.ProbeOK,
		ProbeTotal:    w.ProbeTotal,
		CPUPercent:    w.CPUPercent,
		MemoryPercent: w.MemoryPercent,
	}
	if w.Requests != nil {
		g.HasRequests = true
		g.Requests = *w.Requests
		if w.Errors != nil {
			g.Errors = *w.Errors
		}
	}
	return g, true
}
