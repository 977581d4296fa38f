package scheduler

import (
	"context"
	"fmt"
	"time"
)

// soak samples health until the soak ends or the stage crosses its failure
// threshold (it reports whether it did).
func (c *Controller) soak(ctx context.Context, r *Rollout) (bool, error) {
	st := &r.Stages[r.Stage]
	for {
		if ctl := c.controls.current(); ctl.Rollback != nil {
			return false, c.manualRollback(ctx, r, ctl.Rollback)
		}
		if err := c.catchUpSwitch(ctx, r); err != nil {
			return false, err
		}
		// Every device soaks for the whole soak after its own switch: one
		// caught up during its stage's soak extends it.
		for _, rec := range r.StageDevices(r.Stage) {
			if rec.State == DeviceVerifying && !rec.SwitchedAt.IsZero() {
				if end := rec.SwitchedAt.Add(st.Soak); end.After(st.SoakUntil) {
					st.SoakUntil = end
				}
			}
		}
		if err := c.sample(ctx, r, false); err != nil {
			return false, err
		}
		if err := c.quarantineCaughtUpFailures(ctx, r); err != nil {
			return false, err
		}
		if t := r.StageTally(r.Stage); t.Attempted > 0 && t.FailurePercent() > c.Policy.Rollback.MaxFailurePercent {
			return true, nil
		}
		now := c.Clock.Now()
		if !now.Before(st.SoakUntil) && !c.awaitingVerdicts(r, now) {
			if st.Canary {
				horizon := st.Soak
				if r.Stage+1 < len(r.Stages) {
					horizon = r.Stages[r.Stage+1].Soak
				}
				ds := DetectDegradation(c.Policy, r.StageDevices(r.Stage), now, horizon)
				if len(ds) > 0 {
					// The evidence is persisted before it is acted on.
					if err := c.saveTrends(ctx, r); err != nil {
						return false, err
					}
				}
				if len(ds) > 0 && !st.Extended {
					// Extend once, sampling every second, to tell a
					// trend from noise.
					st.Extended = true
					st.SoakUntil = now.Add(st.Soak)
					c.decide(r, DecisionSoakExtended, fmt.Sprintf("%s soak extended by %s: %s", st.Name, st.Soak, describeDegradations(ds)),
						map[string]float64{"slope_per_s": ds[0].Slope, "projected": ds[0].Projected, "limit": ds[0].Limit})
					if err := c.save(ctx, r); err != nil {
						return false, err
					}
					continue
				}
				if len(ds) > 0 {
					st.Degradation = "gradual degradation: " + describeDegradations(ds)
					c.decide(r, DecisionDegradation, st.Degradation, map[string]float64{"slope_per_s": ds[0].Slope, "projected": ds[0].Projected, "limit": ds[0].Limit, "r2": ds[0].R2})
					return true, nil
				}
			}
			return false, nil
		}
		wait := c.SampleInterval
		if st.Extended && wait > time.Second {
			wait = time.Second
		}
		if left := st.SoakUntil.Sub(now); left > 0 && left < wait {
			wait = left
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-c.Clock.After(wait):
		case <-c.controls.wake():
		}
	}
}

// sample evaluates the gate on the stage's devices once. With final set, a
// device that is not healthy by now fails.
func (c *Controller) sample(ctx context.Context, r *Rollout, final bool) error {
	return c.sampleDevices(ctx, r, sampledRecords(r), final)
}

// sampledRecords are the devices a sample evaluates: the stage's switched
// devices and those catching up.
func sampledRecords(r *Rollout) []*DeviceRecord {
	var recs []*DeviceRecord
	for _, rec := range r.SortedDevices() {
		inStage := rec.Stage == r.Stage && (rec.State == DeviceVerifying || rec.State == DeviceHealthy)
		catchingUp := rec.CatchUp && rec.State == DeviceVerifying
		if inStage || catchingUp {
			recs = append(recs, rec)
		}
	}
	return recs
}

// SummaryWait bounds how long the gate waits for the devices' answers to
// its summary request; it decides with what came.
var SummaryWait = 10 * time.Second

// gateSummaries asks the devices the gate evaluates for a fresh summary
// (when the health source can, SummarySource) and waits for their answers
// for at most SummaryWait. An answer for the release's version (I4) gives
// the device's numbers for the report (After, and Baseline when none was
// measured before the switch), persisted before they are used (I7), and is
// the gate's second opinion on the measured thresholds (MetricsVerdict).
// A device that did not answer has no summary: no evidence, neither a
// pass nor a failure; its checks decide as they did during the soak. Only
// a lost lock, ctx, or a state that cannot be saved is an error.
func (c *Controller) gateSummaries(ctx context.Context, r *Rollout) (map[string]DeviceSummary, error) {
	ss, ok := c.Health.(SummarySource)
	if !ok {
		return nil, nil
	}
	recs := sampledRecords(r)
	if len(recs) == 0 {
		return nil, nil
	}
	// The request is a write (to the agents' configuration): fenced.
	if err := c.fenced("requesting device summaries for the gate of " + r.App); err != nil {
		return nil, err
	}
	refs := make([]DeviceRef, 0, len(recs))
	for _, rec := range recs {
		refs = append(refs, rec.DeviceRef)
	}
	wctx, cancel := context.WithTimeout(ctx, SummaryWait)
	got, err := ss.Summaries(wctx, r, refs)
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	log := c.Logger.Named("controller")
	if err != nil {
		log.Warn("device summaries unavailable at the gate; deciding on the checks", "rollout", r.App, "error", err)
	}
	out := map[string]DeviceSummary{}
	for _, rec := range recs {
		s, ok := got[rec.ID]
		if !ok || !SameVersion(s.Version, c.Policy.Release.Version) {
			continue
		}
		out[rec.ID] = s
		changed := false
		if s.Current != nil && finiteMetrics(s.Current) {
			m := *s.Current
			rec.After = &m
			changed = true
		}
		if rec.Baseline == nil && s.Baseline != nil && finiteMetrics(s.Baseline) && !SameVersion(s.BaselineVersion, c.Policy.Release.Version) {
			m := *s.Baseline
			rec.Baseline = &m
			changed = true
		}
		if changed {
			if err := c.saveDevice(ctx, r, rec); err != nil {
				return nil, err
			}
		}
	}
	log.Info("device summaries at the gate", "rollout", r.App, "asked", len(recs), "answered", len(out))
	return out, nil
}

// finiteMetrics reports a measurement without NaN or infinities.
func finiteMetrics(m *Metrics) bool {
	return finite(m.ErrorRate) && finite(m.P95LatencyMS) && finite(m.CPUPercent) && finite(m.MemoryMB) && finite(m.TemperatureC)
}

// sampleDevices evaluates the gate on devices once.
func (c *Controller) sampleDevices(ctx context.Context, r *Rollout, recs []*DeviceRecord, final bool) error {
	return c.sampleDevicesWith(ctx, r, recs, final, nil)
}

// sampleDevicesWith evaluates the gate on devices once; a device's summary
// (sums), when it answered one, gives the measurements the thresholds are
// checked against instead of its check output, which may be minutes old.
func (c *Controller) sampleDevicesWith(ctx context.Context, r *Rollout, recs []*DeviceRecord, final bool, sums map[string]DeviceSummary) error {
	refs := make([]DeviceRef, 0, len(recs))
	for _, rec := range recs {
		refs = append(refs, rec.DeviceRef)
	}
	if len(refs) == 0 {
		return nil
	}
	health, err := c.Health.Health(ctx, r, refs)
	if err != nil && final {
		// The gate needs evidence: wait for it (within the control-plane
		// budget), then pause. Never a verdict from stale data.
		err = c.clusterCall(ctx, "reading device health for the gate of "+r.App, func() error {
			h, herr := c.Health.Health(ctx, r, refs)
			if herr != nil {
				return fmt.Errorf("%w: health is inconclusive: %v", ErrControlPlane, herr)
			}
			health = h
			return nil
		})
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.Logger.Named("controller").Warn("health is inconclusive; waiting", "rollout", r.App, "error", err)
		if final {
			return err
		}
		return nil
	}
	now := c.Clock.Now()
	canary := r.Stage < len(r.Stages) && r.Stages[r.Stage].Canary && r.Phase == PhaseCanary
	var dirty []*DeviceRecord
	var events []Event // this reading's outcomes: one audit write
	for _, rec := range recs {
		h := health[rec.ID]
		if s, ok := sums[rec.ID]; ok && s.Current != nil && finiteMetrics(s.Current) {
			m := *s.Current
			h.Metrics = &m
		}
		v := c.Gate.Evaluate(c.Policy, rec, h, now)
		if h.Metrics != nil {
			m := *h.Metrics
			rec.After = &m
			if canary && v.Status != VerdictFail {
				if rec.Trend == nil {
					rec.Trend = &TrendSamples{}
				}
				rec.Trend.add(now, &m)
			}
		}
		changed := false
		if v.Status == VerdictFail && v.Confirm && !final {
			// One failing reading of a check: confirmed only by a later
			// one, once the check has run again.
			switch {
			case rec.SuspectSince.IsZero():
				rec.SuspectSince = now
				events = append(events, c.deviceEvent(r, rec, "verify", "suspect", fmt.Sprintf("L%d: %s (to be confirmed)", v.Layer, v.Reason)))
				continue
			case now.Sub(rec.SuspectSince) < c.confirmWindow():
				continue
			}
		}
		if v.Status != VerdictFail {
			rec.SuspectSince = time.Time{}
		}
		switch v.Status {
		case VerdictFail:
			v = c.latestReason(ctx, r, rec, h, v)
			rec.State = DeviceFailed
			rec.Failed = true
			rec.Reason = v.Reason
			rec.Layer = v.Layer
			changed = true
			events = append(events, c.deviceEvent(r, rec, "verify", "failed", fmt.Sprintf("L%d: %s", v.Layer, v.Reason)))
		case VerdictPass:
			if rec.State == DeviceVerifying && rec.CatchUp {
				rec.State = DeviceCaughtUp
				rec.HealthyAt = now
				rec.Reason = ""
				changed = true
				events = append(events, c.deviceEvent(r, rec, "catch-up", "caught-up", fmt.Sprintf("healthy %s after its switch", now.Sub(rec.SwitchedAt).Round(time.Millisecond))))
			} else if rec.State == DeviceVerifying {
				rec.State = DeviceHealthy
				rec.HealthyAt = now
				rec.Reason = ""
				changed = true
				events = append(events, c.deviceEvent(r, rec, "verify", "healthy", fmt.Sprintf("healthy %s after its switch", now.Sub(rec.SwitchedAt).Round(time.Millisecond))))
			}
		case VerdictPending:
			if final && rec.CatchUp && rec.Stage != r.Stage && now.Before(rec.SwitchedAt.Add(c.HealthDeadline)) {
				// Caught up late in another stage's soak: keep verifying
				// it (the next soak, or confirm, decides).
				break
			}
			if final {
				if !h.Online || v.Connectivity {
					rec.State = DeviceSkippedOffline
					rec.Reason = "went offline after its switch; it will be verified (or rolled back) when it returns"
					if h.Online {
						rec.Reason = "lost its connectivity after its switch (" + v.Reason + "); it will be verified (or rolled back) when it returns"
					}
					events = append(events, c.deviceEvent(r, rec, "verify", "skipped-offline", rec.Reason))
				} else {
					rec.State = DeviceFailed
					rec.Failed = true
					rec.Layer = v.Layer
					rec.Reason = "not healthy by the end of the soak: " + v.Reason
					events = append(events, c.deviceEvent(r, rec, "verify", "failed", rec.Reason))
				}
				changed = true
			}
		}
		if rec.Trend != nil && now.Sub(rec.Trend.SavedAt) >= trendSaveInterval {
			changed = true
		}
		if changed {
			if rec.Trend != nil {
				rec.Trend.SavedAt = now
			}
			dirty = append(dirty, rec)
		}
	}
	// One audit write for the outcomes of this reading, and one batch
	// write (a transaction per DeviceBatch records) for the verdicts,
	// before anything acts on them.
	c.emitEvents(r, events)
	return c.saveDevices(ctx, r, dirty)
}

// awaitingVerdicts reports whether a device of the current stage has no
// verdict yet but is still within its health deadline: the gate waits for
// it rather than failing a device that just switched.
func (c *Controller) awaitingVerdicts(r *Rollout, now time.Time) bool {
	for _, rec := range r.StageDevices(r.Stage) {
		if rec.State == DeviceVerifying && now.Before(rec.SwitchedAt.Add(c.HealthDeadline)) {
			return true
		}
	}
	return false
}

// trendSaveInterval is how often a canary device's samples are persisted
// while it soaks (and always before a decision is taken on them).
const trendSaveInterval = 15 * time.Second

// saveTrends persists the samples of the stage's devices.
func (c *Controller) saveTrends(ctx context.Context, r *Rollout) error {
	for _, rec := range r.StageDevices(r.Stage) {
		if rec.Trend == nil {
			continue
		}
		rec.Trend.SavedAt = c.Clock.Now()
		if err := c.saveDevice(ctx, r, rec); err != nil {
			return err
		}
	}
	return nil
}

// confirmWindow is how long after a check's first failing reading a later
// reading confirms it: one check interval (the check ran again) and a
// second.
func (c *Controller) confirmWindow() time.Duration {
	interval := c.Policy.Health.Application.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	return interval + time.Second
}
