package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMetricsPrometheus: with EDGEINFER_METRICS_FORMAT=prometheus, /metrics
// answers the text format (and no JSON): requests by code, the latency
// histogram (cumulative buckets), the resident memory.
func TestMetricsPrometheus(t *testing.T) {
	ts := newTestServer(t, map[string]string{envMetricsFormat: "prometheus", envErrorRate: "0.2"})
	ts.cfg.faults.slow = 30 * time.Millisecond
	for range 10 {
		ts.infer(t, "cat.jpg")
	}
	rec := ts.do(t, http.MethodGet, "/metrics", "")
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %s\n%s", rec.Code, rec.Header().Get("Content-Type"), body)
	}
	if strings.Contains(body, "{\"") || strings.Contains(body, "error_rate") {
		t.Errorf("the Prometheus page has the JSON record:\n%s", body)
	}
	for _, want := range []string{
		"# TYPE http_requests_total counter\n",
		`http_requests_total{handler="/infer",code="200"} 8` + "\n",
		`http_requests_total{handler="/infer",code="500"} 2` + "\n",
		"# TYPE http_request_duration_seconds histogram\n",
		`http_request_duration_seconds_bucket{handler="/infer",le="0.025"} 0` + "\n",
		`http_request_duration_seconds_bucket{handler="/infer",le="0.05"} 10` + "\n",
		`http_request_duration_seconds_bucket{handler="/infer",le="+Inf"} 10` + "\n",
		`http_request_duration_seconds_count{handler="/infer"} 10` + "\n",
		"\nprocess_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestMetricsFormatFlag(t *testing.T) {
	cfg, _, err := parseConfig([]string{"-metrics-format", "prometheus"}, envFunc(nil), nil)
	if err != nil || !cfg.prometheus {
		t.Errorf("-metrics-format prometheus: %+v %v", cfg, err)
	}
	if _, _, err := parseConfig(nil, envFunc(map[string]string{envMetricsFormat: "xml"}), nil); err == nil || !strings.Contains(err.Error(), envMetricsFormat) {
		t.Errorf("a bad format: %v", err)
	}
}
