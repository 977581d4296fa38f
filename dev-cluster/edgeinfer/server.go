package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// server is the HTTP service. Time comes from now and injected delays go
// through sleep, so tests drive fault timing with a fake clock.
type server struct {
	cfg     config
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) error
	rss     func() (uint64, error)
	log     *slog.Logger
	started time.Time

	seq          atomic.Uint64 // /infer arrival counter, drives the error-rate fault
	sawUnhealthy atomic.Bool   // the unhealthy transition was logged

	mu       sync.Mutex
	requests uint64 // /infer requests answered
	errors   uint64 // of which answered with status >= 400
	window   latencyWindow
	byCode   map[int]uint64 // /infer answers by status code
	hist     histogram      // /infer latency

	leak leaker
}

func newServer(cfg config, now func() time.Time, log *slog.Logger) *server {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &server{
		cfg:     cfg,
		now:     now,
		sleep:   sleepCtx,
		rss:     readRSS,
		log:     log,
		started: now(),
		window:  newLatencyWindow(latencyWindowSize),
		byCode:  map[int]uint64{},
		hist:    newHistogram(),
	}
	s.leak = leaker{rateMBPerS: cfg.faults.leakMBPerS, maxMB: cfg.faults.leakMaxMB}
	return s
}

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("POST /infer", s.handleInfer)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /{$}", s.handleIndex)
	return mux
}

func (s *server) uptime() time.Duration { return s.now().Sub(s.started) }

// ---- /health ----

type healthResponse struct {
	Status        string            `json:"status"`
	Version       string            `json:"version"`
	Build         string            `json:"build"`
	Model         string            `json:"model,omitempty"`
	UptimeSeconds float64           `json:"uptime_seconds"`
	Checks        map[string]string `json:"checks"`
}

func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	f := s.cfg.faults
	up := s.uptime()
	resp := healthResponse{
		Status:        "healthy",
		Version:       s.cfg.version,
		Build:         s.cfg.build,
		Model:         s.cfg.model,
		UptimeSeconds: seconds(up),
		Checks:        map[string]string{"model": "loaded", "inference": "ok"},
	}
	if f.wrongVersion != "" {
		resp.Version, resp.Build = f.wrongVersion, f.wrongVersion
	}
	code := http.StatusOK
	switch {
	case f.unhealthy && up >= f.unhealthyAfter:
		resp.Status = "unhealthy"
		resp.Checks["model"] = fmt.Sprintf("failed: inference engine stopped responding after %s (fault %s)", f.unhealthyAfter, envUnhealthyAfter)
		resp.Checks["inference"] = "failed"
		code = http.StatusServiceUnavailable
		if !s.sawUnhealthy.Swap(true) {
			s.log.Warn("reporting unhealthy (injected fault)", "fault", envUnhealthyAfter, "after", f.unhealthyAfter.String())
		}
	case f.degraded:
		resp.Status = "degraded"
		resp.Checks["inference"] = fmt.Sprintf("degraded: accelerator unavailable, running on CPU fallback (fault %s)", envDegraded)
	}
	writeJSON(w, code, resp)
}

// ---- /infer ----

type inferRequest struct {
	Image string `json:"image"`
}

type inferResponse struct {
	Label      string  `json:"label"`
	Confidence float64 `json:"confidence"`
	Model      string  `json:"model"`
	Version    string  `json:"version"`
}

func (s *server) handleInfer(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	n := s.seq.Add(1)
	code := s.infer(w, r, n, start)
	s.record(s.now().Sub(start), code)
}

func (s *server) infer(w http.ResponseWriter, r *http.Request, n uint64, start time.Time) int {
	f := s.cfg.faults
	if d := s.injectedDelay(start.Sub(s.started)); d > 0 {
		// A cancelled wait (client gone, server stopping) still answers.
		_ = s.sleep(r.Context(), d)
	}
	if failNth(n, f.errorRatePPM) {
		return writeError(w, http.StatusInternalServerError, fmt.Sprintf("simulated internal error on request %d (fault %s)", n, envErrorRate))
	}
	var req inferRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return writeError(w, http.StatusBadRequest, "bad request body: "+err.Error())
	}
	label := labelFor(req.Image)
	if label == "" {
		return writeError(w, http.StatusBadRequest, `bad request body: "image" must name a file, e.g. {"image":"cat.jpg"}`)
	}
	if f.wrongOutput {
		if label == wrongLabel {
			label = wrongLabelFallback
		} else {
			label = wrongLabel
		}
	}
	return writeJSON(w, http.StatusOK, inferResponse{
		Label:      label,
		Confidence: inferConfidence,
		Model:      s.cfg.modelName(),
		Version:    s.cfg.version,
	})
}

// injectedDelay is the delay the SLOW and LATENCY_RAMP faults add to a
// request that arrives at the given uptime.
func (s *server) injectedDelay(uptime time.Duration) time.Duration {
	f := s.cfg.faults
	d := f.slow
	if f.rampPer > 0 && f.rampNum > 0 && uptime > 0 {
		ramp := float64(f.rampNum) * (float64(uptime) / float64(f.rampPer))
		if ramp > float64(f.rampMax) {
			ramp = float64(f.rampMax)
		}
		d += time.Duration(ramp)
	}
	return d
}

// failNth reports whether the n-th request (1-based) fails under an error
// rate of ppm parts per million: exactly floor(n*rate) of the first n fail,
// evenly spread (0.2 fails requests 5, 10, 15, ...).
func failNth(n, ppm uint64) bool {
	if n == 0 || ppm == 0 {
		return false
	}
	return n*ppm/ppmScale > (n-1)*ppm/ppmScale
}

// labelFor derives the deterministic label from an image name: the base
// name without its extension, lower-cased ("/data/Cat.JPG" -> "cat").
func labelFor(image string) string {
	image = strings.TrimSpace(strings.ReplaceAll(image, `\`, "/"))
	if image == "" {
		return ""
	}
	base := path.Base(image)
	if base == "/" || base == "." || base == ".." {
		return ""
	}
	if ext := path.Ext(base); ext != base {
		base = strings.TrimSuffix(base, ext)
	}
	return strings.ToLower(base)
}

func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, inferBodyLimit))
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty body, want JSON such as {\"image\":\"cat.jpg\"}")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func (s *server) record(latency time.Duration, code int) {
	failed := code >= 400
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if failed {
		s.errors++
	}
	s.window.add(latency, failed)
	s.byCode[code]++
	s.hist.observe(latency.Seconds())
}

// ---- /metrics ----

type metricsResponse struct {
	RequestsTotal   uint64  `json:"requests_total"`
	ErrorsTotal     uint64  `json:"errors_total"`
	ErrorRate       float64 `json:"error_rate"`
	WindowRequests  int     `json:"window_requests"`
	WindowErrorRate float64 `json:"window_error_rate"`
	P95LatencyMs    float64 `json:"p95_latency_ms"`
	RSSBytes        uint64  `json:"rss_bytes"`
	LeakedBytes     uint64  `json:"leaked_bytes"`
	UptimeSeconds   float64 `json:"uptime_seconds"`
	Version         string  `json:"version"`
	Build           string  `json:"build"`
}

func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	if s.cfg.prometheus {
		s.writePrometheus(w)
		return
	}
	s.mu.Lock()
	m := metricsResponse{
		RequestsTotal:   s.requests,
		ErrorsTotal:     s.errors,
		WindowRequests:  s.window.len(),
		WindowErrorRate: s.window.errorRate(),
		P95LatencyMs:    ms(s.window.p95()),
	}
	s.mu.Unlock()
	if m.RequestsTotal > 0 {
		m.ErrorRate = float64(m.ErrorsTotal) / float64(m.RequestsTotal)
	}
	if rss, err := s.rss(); err == nil {
		m.RSSBytes = rss
	}
	m.LeakedBytes = s.leak.held()
	m.UptimeSeconds = seconds(s.uptime())
	m.Version, m.Build = s.cfg.version, s.cfg.build
	writeJSON(w, http.StatusOK, m)
}

// ---- / ----

func (s *server) handleIndex(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"service":   "edgeinfer",
		"version":   s.cfg.version,
		"endpoints": []string{"GET /health", "POST /infer", "GET /metrics"},
	})
}

// ---- helpers ----

func writeJSON(w http.ResponseWriter, code int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v)
	return code
}

func writeError(w http.ResponseWriter, code int, msg string) int {
	return writeJSON(w, code, map[string]string{"error": msg})
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seconds rounds a duration to milliseconds, in seconds.
func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }

// ms is a duration in milliseconds, rounded to microseconds.
func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }
