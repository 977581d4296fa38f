package main

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHealthHealthy(t *testing.T) {
	ts := newTestServer(t, map[string]string{envVersionMeta: "2.0.0+r42"})
	ts.clock.Advance(1500 * time.Millisecond)
	code, h := ts.health(t)
	if code != http.StatusOK {
		t.Fatalf("status code %d, want 200", code)
	}
	want := healthResponse{
		Status: "healthy", Version: "2.0.0", Build: "2.0.0+r42", UptimeSeconds: 1.5,
		Checks: map[string]string{"model": "loaded", "inference": "ok"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("health =\n %+v\nwant\n %+v", h, want)
	}
}

func TestHealthRawJSONShape(t *testing.T) {
	// The agent parses these exact keys; "model" is absent without MODEL.
	ts := newTestServer(t, map[string]string{envVersion: "1.0.0"})
	body := ts.do(t, http.MethodGet, "/health", "").Body.String()
	for _, k := range []string{`"status":"healthy"`, `"version":"1.0.0"`, `"checks":{`, `"model":"loaded"`, `"uptime_seconds":0`} {
		if !strings.Contains(body, k) {
			t.Errorf("body %s lacks %s", body, k)
		}
	}
	if strings.Contains(body, `"model":"edgeinfer`) {
		t.Errorf("body %s reports a model although MODEL is unset", body)
	}
	ts = newTestServer(t, map[string]string{"MODEL": "mobilenet-int8"})
	if _, h := ts.health(t); h.Model != "mobilenet-int8" {
		t.Errorf("model = %q, want mobilenet-int8", h.Model)
	}
}

func TestHealthMethods(t *testing.T) {
	ts := newTestServer(t, nil)
	if rec := ts.do(t, http.MethodHead, "/health", ""); rec.Code != http.StatusOK {
		t.Errorf("HEAD /health: %d", rec.Code)
	}
	if rec := ts.do(t, http.MethodPost, "/health", "{}"); rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /health: %d, want 405", rec.Code)
	}
	if rec := ts.do(t, http.MethodGet, "/nope", ""); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", rec.Code)
	}
	if rec := ts.do(t, http.MethodGet, "/", ""); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "POST /infer") {
		t.Errorf("GET /: %d %s", rec.Code, rec.Body)
	}
}

func TestFaultDegraded(t *testing.T) {
	ts := newTestServer(t, map[string]string{envDegraded: "1"})
	code, h := ts.health(t)
	if code != http.StatusOK || h.Status != "degraded" {
		t.Fatalf("got %d %q, want 200 degraded", code, h.Status)
	}
	if !strings.HasPrefix(h.Checks["inference"], "degraded") || h.Checks["model"] != "loaded" {
		t.Errorf("checks = %v", h.Checks)
	}
	// /infer is unaffected.
	if r := decodeInfer(t, ts.infer(t, "cat.jpg")); r.Label != "cat" {
		t.Errorf("label %q, want cat", r.Label)
	}
}

func TestFaultUnhealthyAfter(t *testing.T) {
	ts := newTestServer(t, map[string]string{envUnhealthyAfter: "10s", envVersion: "2.0.0"})
	steps := []struct {
		advance    time.Duration
		wantCode   int
		wantStatus string
	}{
		{0, 200, "healthy"},
		{9*time.Second + 999*time.Millisecond, 200, "healthy"},
		{time.Millisecond, 503, "unhealthy"}, // exactly 10s
		{time.Hour, 503, "unhealthy"},        // stays unhealthy
	}
	for i, st := range steps {
		ts.clock.Advance(st.advance)
		code, h := ts.health(t)
		if code != st.wantCode || h.Status != st.wantStatus {
			t.Errorf("step %d (uptime %v): got %d %q, want %d %q", i, ts.uptime(), code, h.Status, st.wantCode, st.wantStatus)
		}
		if h.Version != "2.0.0" {
			t.Errorf("step %d: version %q", i, h.Version)
		}
		if st.wantStatus == "unhealthy" && !strings.HasPrefix(h.Checks["model"], "failed") {
			t.Errorf("step %d: checks %v", i, h.Checks)
		}
	}
	// /infer keeps working: the fault belongs to the health endpoint.
	if rec := ts.infer(t, "cat.jpg"); rec.Code != http.StatusOK {
		t.Errorf("/infer while unhealthy: %d", rec.Code)
	}
}

func TestFaultUnhealthyFromStartAndBeatsDegraded(t *testing.T) {
	ts := newTestServer(t, map[string]string{envUnhealthyAfter: "0s", envDegraded: "1"})
	if code, h := ts.health(t); code != 503 || h.Status != "unhealthy" {
		t.Errorf("got %d %q, want 503 unhealthy", code, h.Status)
	}
}

func TestFaultWrongVersion(t *testing.T) {
	ts := newTestServer(t, map[string]string{envVersionMeta: "2.0.0+r1", envWrongVersion: "9.9.9"})
	code, h := ts.health(t)
	if code != 200 || h.Status != "healthy" || h.Version != "9.9.9" || h.Build != "9.9.9" {
		t.Errorf("health = %d %+v, want 200 healthy version 9.9.9", code, h)
	}
	if r := decodeInfer(t, ts.infer(t, "cat.jpg")); r.Version != "2.0.0" {
		t.Errorf("/infer version %q, want the real 2.0.0", r.Version)
	}
	if m := ts.metrics(t); m.Version != "2.0.0" || m.Build != "2.0.0+r1" {
		t.Errorf("/metrics version %q build %q", m.Version, m.Build)
	}
}

func TestInferContract(t *testing.T) {
	tests := []struct {
		image, label string
	}{
		{"cat.jpg", "cat"},
		{"dog.png", "dog"},
		{"/data/samples/Bird.JPEG", "bird"},
		{`C:\images\fox.bmp`, "fox"},
		{"car", "car"},
		{"truck.v2.jpg", "truck.v2"},
		{".hidden", ".hidden"},
	}
	ts := newTestServer(t, map[string]string{envVersionMeta: "2.0.0+r9"})
	for _, tt := range tests {
		r := decodeInfer(t, ts.infer(t, tt.image))
		want := inferResponse{Label: tt.label, Confidence: 0.97, Model: defaultModel, Version: "2.0.0"}
		if r != want {
			t.Errorf("infer(%q) = %+v, want %+v", tt.image, r, want)
		}
	}
	// Deterministic: same input, byte-identical answer.
	a := ts.infer(t, "cat.jpg").Body.String()
	b := ts.infer(t, "cat.jpg").Body.String()
	if a != b || !strings.Contains(a, `"label":"cat","confidence":0.97`) {
		t.Errorf("answers differ or wrong shape: %s vs %s", a, b)
	}
	// MODEL env names the model.
	ts = newTestServer(t, map[string]string{"MODEL": "resnet18-jetson"})
	if r := decodeInfer(t, ts.infer(t, "cat.jpg")); r.Model != "resnet18-jetson" {
		t.Errorf("model %q, want resnet18-jetson", r.Model)
	}
	// Unknown fields are tolerated.
	if rec := ts.do(t, http.MethodPost, "/infer", `{"image":"owl.jpg","id":7}`); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"label":"owl"`) {
		t.Errorf("extra field: %d %s", rec.Code, rec.Body)
	}
}

func TestInferBadRequests(t *testing.T) {
	bodies := []string{
		`{"image":`,                    // truncated
		`not json`,                     // garbage
		``,                             // empty
		`{"image":"cat.jpg"} trailing`, // trailing data
		`{"image":""}`,                 // no image
		`{}`,                           // no image
		`{"image":42}`,                 // wrong type
		`{"image":"/"}`,                // no file name
		`["cat.jpg"]`,                  // not an object
	}
	ts := newTestServer(t, nil)
	for _, b := range bodies {
		rec := ts.do(t, http.MethodPost, "/infer", b)
		if rec.Code != http.StatusBadRequest {
			t.Errorf("body %q: status %d, want 400 (%s)", b, rec.Code, rec.Body)
		}
		if !strings.Contains(rec.Body.String(), `"error":`) {
			t.Errorf("body %q: answer %s has no error message", b, rec.Body)
		}
	}
	big := `{"image":"` + strings.Repeat("a", inferBodyLimit) + `.jpg"}`
	if rec := ts.do(t, http.MethodPost, "/infer", big); rec.Code != http.StatusBadRequest {
		t.Errorf("oversized body: status %d, want 400", rec.Code)
	}
	ts.infer(t, "cat.jpg")
	m := ts.metrics(t)
	n := uint64(len(bodies) + 2)
	if m.RequestsTotal != n || m.ErrorsTotal != n-1 {
		t.Errorf("requests=%d errors=%d, want %d and %d", m.RequestsTotal, m.ErrorsTotal, n, n-1)
	}
}

func TestInferMethodNotAllowed(t *testing.T) {
	ts := newTestServer(t, nil)
	rec := ts.do(t, http.MethodGet, "/infer", "")
	if rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Header().Get("Allow"), "POST") {
		t.Errorf("GET /infer: %d Allow=%q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestFaultWrongOutput(t *testing.T) {
	ts := newTestServer(t, map[string]string{envWrongOutput: "1"})
	for image, want := range map[string]string{"cat.jpg": "dog", "bird.png": "dog", "dog.png": "cat"} {
		rec := ts.infer(t, image)
		r := decodeInfer(t, rec)
		if r.Label != want {
			t.Errorf("infer(%q) label %q, want the wrong %q", image, r.Label, want)
		}
		if r.Confidence != 0.97 {
			t.Errorf("confidence %v: a wrong answer still looks confident", r.Confidence)
		}
	}
	if m := ts.metrics(t); m.ErrorsTotal != 0 {
		t.Errorf("wrong output counted %d errors; it answers 200", m.ErrorsTotal)
	}
}

func TestFaultSlow(t *testing.T) {
	ts := newTestServer(t, map[string]string{envSlow: "300ms"})
	before := ts.clock.Now()
	for range 3 {
		if rec := ts.infer(t, "cat.jpg"); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
	}
	if got := ts.clock.Now().Sub(before); got != 900*time.Millisecond {
		t.Errorf("3 requests slept %v in total, want 900ms", got)
	}
	if m := ts.metrics(t); m.P95LatencyMs != 300 {
		t.Errorf("p95 = %vms, want 300", m.P95LatencyMs)
	}
	// Only /infer is slow.
	before = ts.clock.Now()
	ts.health(t)
	ts.metrics(t)
	if ts.clock.Now() != before {
		t.Error("/health or /metrics were delayed")
	}
}

func TestNoFaultNoDelay(t *testing.T) {
	ts := newTestServer(t, nil)
	ts.clock.Advance(time.Hour)
	slept := false
	ts.sleep = func(_ context.Context, d time.Duration) error { slept = true; return nil }
	for range 5 {
		ts.infer(t, "cat.jpg")
	}
	if slept {
		t.Error("a request was delayed without a fault")
	}
	if m := ts.metrics(t); m.P95LatencyMs != 0 || m.ErrorsTotal != 0 || m.RequestsTotal != 5 {
		t.Errorf("metrics %+v", m)
	}
}

func TestFaultLatencyRamp(t *testing.T) {
	ts := newTestServer(t, map[string]string{envLatencyRamp: "50ms/s", envLatencyRampMax: "2s"})
	latencyAt := func(uptime time.Duration) time.Duration {
		t.Helper()
		ts.clock.Advance(uptime - ts.uptime())
		before := ts.clock.Now()
		if rec := ts.infer(t, "cat.jpg"); rec.Code != 200 {
			t.Fatalf("status %d", rec.Code)
		}
		return ts.clock.Now().Sub(before)
	}
	for _, st := range []struct{ uptime, want time.Duration }{
		{0, 0},
		{time.Second, 50 * time.Millisecond},
		{10 * time.Second, 500 * time.Millisecond},
		{30*time.Second + 500*time.Millisecond, 1525 * time.Millisecond},
		{40 * time.Second, 2 * time.Second}, // capped
		{time.Hour, 2 * time.Second},        // stays capped
	} {
		if got := latencyAt(st.uptime); got != st.want {
			t.Errorf("uptime %v: delay %v, want %v", st.uptime, got, st.want)
		}
	}
}

func TestFaultLatencyRampAddsToSlow(t *testing.T) {
	ts := newTestServer(t, map[string]string{envSlow: "100ms", envLatencyRamp: "1s/m"})
	ts.clock.Advance(30 * time.Second)
	if got := ts.injectedDelay(ts.uptime()); got != 600*time.Millisecond {
		t.Errorf("delay %v, want 100ms + 500ms", got)
	}
	if got := newTestServer(t, map[string]string{envLatencyRamp: "50ms/s"}).injectedDelay(time.Hour); got != defaultRampMax {
		t.Errorf("default cap: delay %v, want %v", got, defaultRampMax)
	}
}

func TestFailNth(t *testing.T) {
	failing := func(ppm uint64, n int) []int {
		var out []int
		for i := 1; i <= n; i++ {
			if failNth(uint64(i), ppm) {
				out = append(out, i)
			}
		}
		return out
	}
	if got := failing(200_000, 20); !reflect.DeepEqual(got, []int{5, 10, 15, 20}) {
		t.Errorf("0.2: %v", got)
	}
	if got := failing(300_000, 10); !reflect.DeepEqual(got, []int{4, 7, 10}) {
		t.Errorf("0.3: %v", got)
	}
	if got := failing(500_000, 6); !reflect.DeepEqual(got, []int{2, 4, 6}) {
		t.Errorf("0.5: %v", got)
	}
	if got := failing(1_000_000, 4); !reflect.DeepEqual(got, []int{1, 2, 3, 4}) {
		t.Errorf("1: %v", got)
	}
	if got := failing(0, 100); got != nil {
		t.Errorf("0: %v", got)
	}
	// Exactly floor(n*rate) of the first n fail, for awkward rates too.
	for _, ppm := range []uint64{1, 100_000, 123_457, 333_333, 999_999} {
		for _, n := range []int{1, 7, 100, 1000, 12345} {
			if got, want := len(failing(ppm, n)), int(uint64(n)*ppm/ppmScale); got != want {
				t.Errorf("ppm %d, n %d: %d failures, want %d", ppm, n, got, want)
			}
		}
	}
}

func TestFaultErrorRate(t *testing.T) {
	ts := newTestServer(t, map[string]string{envErrorRate: "0.2"})
	var failed []int
	for i := 1; i <= 100; i++ {
		rec := ts.infer(t, "cat.jpg")
		switch rec.Code {
		case http.StatusInternalServerError:
			failed = append(failed, i)
			if !strings.Contains(rec.Body.String(), envErrorRate) {
				t.Errorf("500 body %s does not name the fault", rec.Body)
			}
		case http.StatusOK:
		default:
			t.Fatalf("request %d: status %d", i, rec.Code)
		}
	}
	if len(failed) != 20 || failed[0] != 5 || failed[19] != 100 {
		t.Errorf("failed requests %v, want every 5th", failed)
	}
	m := ts.metrics(t)
	if m.RequestsTotal != 100 || m.ErrorsTotal != 20 || m.ErrorRate != 0.2 {
		t.Errorf("metrics requests=%d errors=%d rate=%v, want 100/20/0.2", m.RequestsTotal, m.ErrorsTotal, m.ErrorRate)
	}
	if m.WindowRequests != 100 || m.WindowErrorRate != 0.2 {
		t.Errorf("window %d rate %v", m.WindowRequests, m.WindowErrorRate)
	}
}

func TestFaultErrorRateCountsBadRequestsInSequence(t *testing.T) {
	// The injected 500 is decided by arrival order before the body is read:
	// request 2 of "50%" fails with 500 even with a bad body; request 3's bad
	// body is a 400.
	ts := newTestServer(t, map[string]string{envErrorRate: "50%"})
	codes := []int{
		ts.infer(t, "cat.jpg").Code,
		ts.do(t, http.MethodPost, "/infer", "bad").Code,
		ts.do(t, http.MethodPost, "/infer", "bad").Code,
		ts.infer(t, "cat.jpg").Code,
	}
	if want := []int{200, 500, 400, 500}; !reflect.DeepEqual(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
	if m := ts.metrics(t); m.ErrorsTotal != 3 || m.ErrorRate != 0.75 {
		t.Errorf("errors %d rate %v, want 3 and 0.75", m.ErrorsTotal, m.ErrorRate)
	}
}

func TestMetricsP95(t *testing.T) {
	ts := newTestServer(t, nil)
	// 100 requests of 1..100 ms, shuffled order does not matter: p95 = 95ms.
	for i := 100; i >= 1; i-- {
		ts.cfg.faults.slow = time.Duration(i) * time.Millisecond
		ts.infer(t, "cat.jpg")
	}
	if m := ts.metrics(t); m.P95LatencyMs != 95 || m.WindowRequests != 100 {
		t.Errorf("p95 = %v over %d, want 95 over 100", m.P95LatencyMs, m.WindowRequests)
	}
}

func TestMetricsP95SlidingWindow(t *testing.T) {
	ts := newTestServer(t, nil)
	// 50 very slow requests, then 200 of 1..200 ms: only the last 200 count,
	// so p95 is the 190th smallest = 190ms (10s if the old ones leaked in).
	ts.cfg.faults.slow = 10 * time.Second
	for range 50 {
		ts.infer(t, "cat.jpg")
	}
	if m := ts.metrics(t); m.P95LatencyMs != 10000 {
		t.Fatalf("p95 = %v, want 10000", m.P95LatencyMs)
	}
	for i := 1; i <= 200; i++ {
		ts.cfg.faults.slow = time.Duration(i) * time.Millisecond
		ts.infer(t, "cat.jpg")
	}
	m := ts.metrics(t)
	if m.P95LatencyMs != 190 || m.WindowRequests != 200 || m.RequestsTotal != 250 {
		t.Errorf("p95 = %v over %d (total %d), want 190 over 200 (total 250)", m.P95LatencyMs, m.WindowRequests, m.RequestsTotal)
	}
}

func TestMetricsFieldsAndUptime(t *testing.T) {
	ts := newTestServer(t, map[string]string{envVersion: "1.4.0+b3"})
	ts.clock.Advance(90*time.Second + 250*time.Millisecond)
	m := ts.metrics(t)
	if m.UptimeSeconds != 90.25 || m.Version != "1.4.0" || m.Build != "1.4.0+b3" {
		t.Errorf("metrics %+v", m)
	}
	if m.RSSBytes < 1<<20 {
		t.Errorf("rss_bytes = %d, want a real resident set", m.RSSBytes)
	}
	if m.RequestsTotal != 0 || m.ErrorRate != 0 || m.P95LatencyMs != 0 {
		t.Errorf("empty metrics %+v", m)
	}
	body := ts.do(t, http.MethodGet, "/metrics", "").Body.String()
	for _, k := range []string{"requests_total", "errors_total", "error_rate", "p95_latency_ms", "rss_bytes", "uptime_seconds", `"version"`} {
		if !strings.Contains(body, k) {
			t.Errorf("/metrics lacks %s: %s", k, body)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	ts := newTestServer(t, map[string]string{envErrorRate: "0.1", envSlow: "1ms"})
	const n = 200
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes <- ts.infer(t, fmt.Sprintf("img%d.jpg", i)).Code
			ts.health(t)
			ts.metrics(t)
		}()
	}
	wg.Wait()
	close(codes)
	var fails int
	for c := range codes {
		if c == 500 {
			fails++
		}
	}
	m := ts.metrics(t)
	if fails != 20 || m.RequestsTotal != n || m.ErrorsTotal != 20 {
		t.Errorf("fails=%d requests=%d errors=%d, want 20/%d/20", fails, m.RequestsTotal, m.ErrorsTotal, n)
	}
}
