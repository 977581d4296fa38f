package contract

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// MetricsLinePrefix starts the metrics record, the last line of the output
// of the device agent's layer 3 check (CheckVersionMetrics).
const MetricsLinePrefix = "metrics: "

// Metrics is the metrics record: what the application's metrics endpoint
// reports and what the agent measures of the device. A nil field was not
// available.
type Metrics struct {
	ErrorRate     *float64 `json:"error_rate,omitempty"`
	P95LatencyMS  *float64 `json:"p95_latency_ms,omitempty"`
	RSSMB         *float64 `json:"rss_mb,omitempty"`
	RequestsTotal *float64 `json:"requests_total,omitempty"`
	CPUPercent    *float64 `json:"cpu_percent,omitempty"`
	MemoryPercent *float64 `json:"memory_percent,omitempty"`
}

// Format is the metrics line: `metrics: {"error_rate":0.01,...}`. Every
// field is always written (null when not available), in a fixed order.
func (m Metrics) Format() string {
	f := func(p *float64) string {
		if p == nil || math.IsNaN(*p) || math.IsInf(*p, 0) {
			return "null"
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	return fmt.Sprintf(`%s{"error_rate":%s,"p95_latency_ms":%s,"rss_mb":%s,"requests_total":%s,"cpu_percent":%s,"memory_percent":%s}`,
		MetricsLinePrefix, f(m.ErrorRate), f(m.P95LatencyMS), f(m.RSSMB), f(m.RequestsTotal), f(m.CPUPercent), f(m.MemoryPercent))
}

// ParseMetrics finds the metrics line in a check output (as Consul records
// it, "HTTP GET ...: 200 OK Output: ..." or the bare body; the last such
// line counts) and decodes it. ok is false when the output has no complete
// metrics line.
func ParseMetrics(output string) (m Metrics, ok bool) {
	i := strings.LastIndex(output, "\n"+MetricsLinePrefix)
	switch {
	case i >= 0:
		i++
	case strings.HasPrefix(output, MetricsLinePrefix):
		i = 0
	default:
		return Metrics{}, false
	}
	line := output[i+len(MetricsLinePrefix):]
	if j := strings.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		return Metrics{}, false
	}
	return m, true
}

// Measured reports whether the application itself could be measured: the
// record has its error rate, its latency or its memory. The device's
// figures alone (cpu, memory percent) do not count.
func (m Metrics) Measured() bool {
	return m.ErrorRate != nil || m.P95LatencyMS != nil || m.RSSMB != nil
}

// NotMeasured is the phrase of a device agent's warning for a declared
// rollback trigger whose figure is missing ("error rate not measured
// (max_error_rate 0.05): <why>"). Such a warning is no evidence: the
// controller's gate keeps the device pending (and fails it at its
// deadline), never counts it as passing.
const NotMeasured = " not measured ("

// SaysNotMeasured reports whether a check output carries a
// "not measured" warning of a declared trigger.
func SaysNotMeasured(output string) bool { return strings.Contains(output, NotMeasured) }
