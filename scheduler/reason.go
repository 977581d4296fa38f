package scheduler

import (
	"context"
	"strings"
	"time"
)

// latestReasonTimeout bounds the read of a failing device's summary.
const latestReasonTimeout = 3 * time.Second

// layerNames are the summary's layer names by layer number.
var layerNames = map[int]string{2: "system", 3: "application", 4: "functional"}

// latestReason adds the device agent's latest reason to a failure found on
// a check (v.Confirm): the check's output is the one Consul forwarded at
// its last status change, possibly that of its first failure (a refused
// connection while the application started) rather than what fails now.
// Only a summary of the same allocation whose layer is critical counts; a
// read that fails or finds nothing leaves the verdict as it is.
func (c *Controller) latestReason(ctx context.Context, r *Rollout, rec *DeviceRecord, h DeviceHealth, v Verdict) Verdict {
	sr, ok := c.Health.(SummaryReader)
	if !ok || !v.Confirm {
		return v
	}
	rctx, cancel := context.WithTimeout(ctx, latestReasonTimeout)
	defer cancel()
	s, found, err := sr.LatestSummary(rctx, r, rec.DeviceRef)
	if err != nil {
		c.Logger.Named("controller").Debug("reading the device's latest summary", "rollout", r.App, "device", rec.Name, "error", err)
		return v
	}
	if !found {
		return v
	}
	return withLatestReason(v, s, h)
}

// withLatestReason is latestReason's decision.
func withLatestReason(v Verdict, s DeviceSummary, h DeviceHealth) Verdict {
	name := layerNames[v.Layer]
	if name == "" || s.Layers[name] != "critical" {
		return v
	}
	if h.Alloc != nil && s.AllocID != "" && s.AllocID != h.Alloc.ID {
		return v
	}
	latest := strings.TrimSpace(s.Reasons[name])
	if latest == "" || strings.Contains(v.Reason, latest) {
		return v
	}
	v.Reason += " (the check's output dates from its last status change; the device agent's latest layer " + name + " verdict: " + latest + ")"
	return v
}
