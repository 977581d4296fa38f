package scheduler

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/contract"
)

// DefaultGate is the gate of the rollout engine: a device passes when its
// candidate allocation runs and every one of its Consul checks passes; it
// fails on a critical check after health.grace, on an allocation that failed
// or restarts more than application.max_restarts times, on a version other
// than the release's, or when it has no healthy allocation before the
// deadline (grace + 60 s after its switch by default).
type DefaultGate struct {
	// Deadline overrides the time a device has to become healthy.
	Deadline time.Duration
}

// Evaluate implements Gate.
func (g DefaultGate) Evaluate(p *Policy, rec *DeviceRecord, h DeviceHealth, now time.Time) Verdict {
	since := now.Sub(rec.SwitchedAt)
	grace := p.Health.Grace
	deadline := g.Deadline
	if deadline <= 0 {
		deadline = grace + 60*time.Second
	}
	late := since >= deadline
	pending := func(layer int, reason string) Verdict {
		if late {
			return Verdict{Status: VerdictFail, Layer: layer, Reason: fmt.Sprintf("%s after %s (deadline %s)", reason, since.Round(time.Second), deadline)}
		}
		return Verdict{Status: VerdictPending, Layer: layer, Reason: reason}
	}
	if !h.Online {
		// Never a failure: offline devices are tracked separately.
		return Verdict{Status: VerdictPending, Layer: 1, Reason: "device offline"}
	}
	a := h.Alloc
	if a == nil {
		return pending(3, "no allocation of the candidate placed")
	}
	if max := p.Health.Application.MaxRestarts; a.Restarts > max {
		return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("crash loop: %d restarts (max_restarts %d)", a.Restarts, max)}
	}
	switch a.Status {
	case "failed", "lost":
		return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("allocation %s is %s (%d restarts)", short(a.ID), a.Status, a.Restarts)}
	case "complete":
		return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("allocation %s exited (complete)", short(a.ID))}
	case "running":
	default:
		return pending(3, fmt.Sprintf("allocation %s is %s", short(a.ID), a.Status))
	}
	if p.Health.Application.ExpectVersion && h.Version != "" && !SameVersion(h.Version, p.Release.Version) {
		return Verdict{Status: VerdictFail, Layer: 3, Reason: fmt.Sprintf("application reports version %s, expected %s", h.Version, p.Release.Version)}
	}
	// By layer; the health source usually sends them so (then they are
	// read in place, never modified).
	checks := h.Checks
	byLayer := func(a, b CheckResult) int { return a.Layer - b.Layer }
	if !slices.IsSortedFunc(checks, byLayer) {
		checks = slices.Clone(checks)
		slices.SortStableFunc(checks, byLayer)
	}
	appChecks := 0
	for _, ch := range checks {
		if ch.Layer != 1 {
			appChecks++
		}
		if (ch.Status == "critical" || ch.Status == "warning") && strings.TrimSpace(ch.Output) == "" {
			// Consul registers a check as critical until its first run
			// (fleetplan's own checks start as warnings, so that their
			// first result is a status change that reaches the servers
			// at once): no output means it has not run yet, neither a
			// pass nor a failure.
			return pending(ch.Layer, fmt.Sprintf("check %q has not run yet", ch.Name))
		}
		if ch.Status == "critical" {
			reason := fmt.Sprintf("check %q is critical", ch.Name)
			if out := checkSummary(ch.Status, ch.Output); out != "" {
				reason += ": " + out
			}
			if a.Restarts > 0 {
				// A task that keeps exiting fails its checks too: the
				// restarts are the cause a person looks for.
				times := "times"
				if a.Restarts == 1 {
					times = "time"
				}
				reason += fmt.Sprintf(" (the allocation restarted %d %s, max_restarts %d)", a.Restarts, times, p.Health.Application.MaxRestarts)
			}
			if ch.Layer == 1 {
				// Connectivity: the device is losing its node agents (a
				// power loss, a network cut), which is offline evidence,
				// never a failure of the release by itself: pending while
				// it soaks, offline at the end of the soak (counted
				// against max_offline_after_switch_percent and verified
				// when it returns), even when the servers have not yet
				// noticed it is gone.
				return Verdict{Status: VerdictPending, Layer: 1, Reason: reason + " (connectivity: not a verdict on the release)", Connectivity: true}
			}
			if since < grace {
				return Verdict{Status: VerdictPending, Layer: ch.Layer, Reason: reason + " (within grace)"}
			}
			return Verdict{Status: VerdictFail, Layer: ch.Layer, Reason: reason, Confirm: true}
		}
	}
	if appChecks == 0 {
		return pending(3, "no health check registered yet")
	}
	// I3: a declared layer without evidence is never healthy; past the
	// deadline it fails the device.
	for _, l := range DeclaredLayers(p) {
		if !hasLayer(checks, l) {
			return pending(l, fmt.Sprintf("layer %d (%s) is declared but no check reports it on this device (is the fleetplan device agent running there?)", l, LayerName(l)))
		}
	}
	for _, ch := range checks {
		if ch.Status != "passing" && ch.Status != "warning" {
			return pending(ch.Layer, fmt.Sprintf("check %q is %s", ch.Name, ch.Status))
		}
		if ch.Status == "warning" && contract.SaysNotMeasured(ch.Output) {
			// A declared rollback trigger the device agent cannot
			// measure (no metrics, a broken endpoint, the first scrape):
			// no evidence, so never a pass; past the deadline it fails
			// the device like a declared layer without a check (I3).
			return pending(ch.Layer, fmt.Sprintf("check %q: %s (no evidence for a declared trigger: not a pass)", ch.Name, checkSummary(ch.Status, ch.Output)))
		}
	}
	// Measured thresholds: the error rate, and the p95 latency against the
	// device's own pre-switch baseline.
	if v, ok := MetricsVerdict(p, rec, h.Metrics); ok {
		return v
	}
	return Verdict{Status: VerdictPass}
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// checkSummary is what a check's output says, for a reason a person reads.
// Consul records an HTTP check's output as
//
//	HTTP GET http://127.0.0.1:7474/v1/probe/functional?service=...: 503 Service Unavailable Output: <body>
//
// whose URL alone can fill the reason: the summary is the body's first
// line, after the HTTP status ("503 Service Unavailable: {...}"), or without
// it when the body starts with the check's own status (the device agent's
// probes answer "critical: <why>", which the HTTP status only repeats).
func checkSummary(status, output string) string {
	const marker = " Output: "
	i := strings.Index(output, marker)
	if !strings.HasPrefix(output, "HTTP ") || i < 0 {
		return firstLine(output)
	}
	head, body := output[:i], firstLine(output[i+len(marker):])
	if rest, ok := strings.CutPrefix(body, status+": "); ok && status != "" {
		return rest
	}
	if j := strings.LastIndex(head, ": "); j >= 0 {
		head = head[j+2:]
	}
	if body == "" {
		return head
	}
	return head + ": " + body
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// DeclaredLayers are the health layers a policy declares beyond the
// application's own check (layer 3 always has Nomad's check): 2 with a
// system block, 4 with a functional block. The device agent reports them.
func DeclaredLayers(p *Policy) []int {
	var out []int
	if p.Health.System != nil {
		out = append(out, 2)
	}
	if p.Health.Functional != nil {
		out = append(out, 4)
	}
	return out
}

// LayerName names a health layer.
func LayerName(l int) string {
	switch l {
	case 1:
		return "connectivity"
	case 2:
		return "system"
	case 3:
		return "application"
	case 4:
		return "functional"
	}
	return "unknown"
}

func hasLayer(checks []CheckResult, layer int) bool {
	for _, ch := range checks {
		if ch.Layer == layer {
			return true
		}
	}
	return false
}

// SameVersion is the version contract's comparison (I4): an application
// may report its version with or without a leading "v" and with semver
// build metadata ("+r2026..."), which names a build, not a version.
// Pre-release parts ("-rc1") do count.
func SameVersion(reported, want string) bool {
	return normalVersion(reported) == normalVersion(want)
}

func normalVersion(v string) string {
	v = strings.TrimSpace(v)
	if len(v) > 1 && (v[0] == 'v' || v[0] == 'V') && v[1] >= '0' && v[1] <= '9' {
		v = v[1:]
	}
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	return v
}
