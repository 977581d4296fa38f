package main

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

// latencyBuckets are the upper bounds (seconds) of the /infer latency
// histogram.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram is a cumulative latency histogram, as Prometheus exposes one.
type histogram struct {
	counts []uint64 // per bucket of latencyBuckets, not cumulative
	count  uint64
	sum    float64
}

func newHistogram() histogram { return histogram{counts: make([]uint64, len(latencyBuckets))} }

func (h *histogram) observe(v float64) {
	h.count++
	h.sum += v
	for i, le := range latencyBuckets {
		if v <= le {
			h.counts[i]++
			return
		}
	}
}

// writePrometheus answers GET /metrics in the Prometheus text exposition
// format (version 0.0.4): http_requests_total by code,
// http_request_duration_seconds (histogram), process_resident_memory_bytes
// and edgeinfer_build_info. Only /infer is counted, as in the JSON record.
func (s *server) writePrometheus(w http.ResponseWriter) {
	s.mu.Lock()
	codes := make([]int, 0, len(s.byCode))
	for c := range s.byCode {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	byCode := make([]uint64, len(codes))
	for i, c := range codes {
		byCode[i] = s.byCode[c]
	}
	h := histogram{counts: slices.Clone(s.hist.counts), count: s.hist.count, sum: s.hist.sum}
	s.mu.Unlock()

	var b bytes.Buffer
	b.WriteString("# HELP http_requests_total /infer requests answered, by status code.\n# TYPE http_requests_total counter\n")
	for i, c := range codes {
		fmt.Fprintf(&b, "http_requests_total{handler=\"/infer\",code=\"%d\"} %d\n", c, byCode[i])
	}
	b.WriteString("# HELP http_request_duration_seconds Latency of /infer requests.\n# TYPE http_request_duration_seconds histogram\n")
	var cum uint64
	for i, le := range latencyBuckets {
		cum += h.counts[i]
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{handler=\"/infer\",le=\"%s\"} %d\n", strconv.FormatFloat(le, 'g', -1, 64), cum)
	}
	fmt.Fprintf(&b, "http_request_duration_seconds_bucket{handler=\"/infer\",le=\"+Inf\"} %d\n", h.count)
	fmt.Fprintf(&b, "http_request_duration_seconds_sum{handler=\"/infer\"} %s\n", strconv.FormatFloat(h.sum, 'g', -1, 64))
	fmt.Fprintf(&b, "http_request_duration_seconds_count{handler=\"/infer\"} %d\n", h.count)
	if rss, err := s.rss(); err == nil {
		fmt.Fprintf(&b, "# HELP process_resident_memory_bytes Resident memory size in bytes.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %d\n", rss)
	}
	fmt.Fprintf(&b, "# HELP edgeinfer_build_info The running build.\n# TYPE edgeinfer_build_info gauge\nedgeinfer_build_info{version=%q,build=%q} 1\n", s.cfg.version, s.cfg.build)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
}
