package contract

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DefaultSummaryPrefix is the Consul KV folder of the device summaries:
// one key per application and device, <prefix>/<app>/<node> (SummaryKey).
// Like the agent configuration folder it does not move with fleetplan's
// root: the agents are installed with it.
const DefaultSummaryPrefix = "fleetplan/agent/summaries"

// SummaryKey is the key of one device's summary for one application in
// folder ("" is DefaultSummaryPrefix).
func SummaryKey(folder, app, node string) string {
	return SummaryFolder(folder, app) + node
}

// SummaryFolder is the folder of an application's summaries, with its
// trailing slash.
func SummaryFolder(folder, app string) string {
	if folder == "" {
		folder = DefaultSummaryPrefix
	}
	return strings.TrimSuffix(folder, "/") + "/" + app + "/"
}

// Layer names used in Summary.Layers.
const (
	LayerSystem      = "system"
	LayerApplication = "application"
	LayerFunctional  = "functional"
)

// Summary is one device's compact record for one application, written by
// the device agent to Consul KV at SummaryKey. The agent judges the
// policy's triggers on the device (edge-local verdicts): only status
// changes travel through Consul checks; the numbers the controller needs
// for its report and comparisons travel here, once per request (the
// application's agent configuration names the request) and on a layer
// status change, never as a stream.
type Summary struct {
	App  string `json:"app"`
	Node string `json:"node"`
	// Version, Slot and AllocID are those of the instance measured (the
	// live one; the candidate when two run).
	Version string `json:"version"`
	Slot    string `json:"slot,omitempty"`
	AllocID string `json:"alloc_id,omitempty"`
	// Request is the summary request this record answers ("" when the
	// agent wrote it on its own, on a status change).
	Request string `json:"request,omitempty"`
	// At is when the record was written; Since the start of the window
	// Window covers (the instance's first measurement, or the previous
	// request's answer, whichever is later).
	At    time.Time `json:"at"`
	Since time.Time `json:"since"`
	// Layers are the agent's verdicts per layer (LayerSystem,
	// LayerApplication, LayerFunctional), as its checks report them.
	Layers map[string]LayerStatus `json:"layers,omitempty"`
	// Current is the latest measurement; nil fields were not available.
	Current *Metrics `json:"current,omitempty"`
	// Baseline is the device's own measurement of the previous version
	// (BaselineVersion), taken before the switch; nil when the agent saw
	// no other version on this device.
	Baseline        *Metrics `json:"baseline,omitempty"`
	BaselineVersion string   `json:"baseline_version,omitempty"`
	// Window aggregates the measurements since Since (for comparisons).
	Window *Window `json:"window,omitempty"`
}

// LayerStatus is one layer's verdict: "passing", "warning" or "critical",
// with a short reason ("error rate 7.2% > 5% (rollback trigger)").
type LayerStatus struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Window is what the agent measured over a window: counts for proportion
// tests and samples for rank tests. A zero count is "not measured" only
// when Samples is also 0.
type Window struct {
	// Samples is how many measurements the window holds.
	Samples int `json:"samples"`
	// Requests and Errors are the application's request and error counts
	// over the window (counter deltas); nil when it reports no counters.
	Requests *float64 `json:"requests,omitempty"`
	Errors   *float64 `json:"errors,omitempty"`
	// LatencyMS are latency samples (the p95 of each measurement, or
	// observations from a histogram), at most MaxWindowSamples, oldest
	// first; P50LatencyMS and P95LatencyMS summarise the window.
	LatencyMS    []float64 `json:"latency_ms,omitempty"`
	P50LatencyMS *float64  `json:"p50_latency_ms,omitempty"`
	P95LatencyMS *float64  `json:"p95_latency_ms,omitempty"`
	// ProbeOK and ProbeTotal count the functional probe's runs.
	ProbeOK    int `json:"probe_ok,omitempty"`
	ProbeTotal int `json:"probe_total,omitempty"`
	// Means of the resource figures over the window.
	CPUPercent    *float64 `json:"cpu_percent,omitempty"`
	MemoryPercent *float64 `json:"memory_percent,omitempty"`
	RSSMB         *float64 `json:"rss_mb,omitempty"`
}

// MaxWindowSamples bounds Window.LatencyMS.
const MaxWindowSamples = 64

// MaxSummaryBytes bounds an encoded summary (Consul KV values are small).
const MaxSummaryBytes = 8 << 10

// EncodeSummary is the summary as JSON, refused when larger than
// MaxSummaryBytes.
func EncodeSummary(s Summary) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding the summary of %s on %s: %w", s.App, s.Node, err)
	}
	if len(b) > MaxSummaryBytes {
		return nil, fmt.Errorf("the summary of %s on %s is %d bytes, more than %d", s.App, s.Node, len(b), MaxSummaryBytes)
	}
	return b, nil
}

// DecodeSummary reads a summary written by EncodeSummary.
func DecodeSummary(b []byte) (Summary, error) {
	var s Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return Summary{}, fmt.Errorf("decoding a device summary: %w", err)
	}
	return s, nil
}
