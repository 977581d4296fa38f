package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is the injected clock; its Sleep advances time instead of
// waiting, so a request's measured latency equals its injected delay.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Sleep(_ context.Context, d time.Duration) error {
	c.Advance(d)
	return nil
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

type testServer struct {
	*server
	clock *fakeClock
	h     http.Handler
}

// newTestServer builds a server from env exactly as the program does, on a
// fake clock.
func newTestServer(t *testing.T, env map[string]string) *testServer {
	t.Helper()
	cfg, _, err := parseConfig(nil, envFunc(env), io.Discard)
	if err != nil {
		t.Fatalf("parseConfig(%v): %v", env, err)
	}
	clock := newFakeClock()
	s := newServer(cfg, clock.Now, nil)
	s.sleep = clock.Sleep
	return &testServer{server: s, clock: clock, h: s.handler()}
}

func (ts *testServer) do(t *testing.T, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	rec := httptest.NewRecorder()
	ts.h.ServeHTTP(rec, req)
	return rec
}

func (ts *testServer) infer(t *testing.T, image string) *httptest.ResponseRecorder {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"image": image})
	return ts.do(t, http.MethodPost, "/infer", string(b))
}

func (ts *testServer) health(t *testing.T) (int, healthResponse) {
	t.Helper()
	rec := ts.do(t, http.MethodGet, "/health", "")
	var h healthResponse
	decodeStrict(t, rec, &h)
	return rec.Code, h
}

func (ts *testServer) metrics(t *testing.T) metricsResponse {
	t.Helper()
	rec := ts.do(t, http.MethodGet, "/metrics", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, body %s", rec.Code, rec.Body)
	}
	var m metricsResponse
	decodeStrict(t, rec, &m)
	return m
}

// decodeStrict decodes a JSON response, failing on fields the type does not
// know, and checks the content type.
func decodeStrict(t *testing.T, rec *httptest.ResponseRecorder, dst any) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	dec := json.NewDecoder(strings.NewReader(rec.Body.String()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		t.Fatalf("decoding %q: %v", rec.Body.String(), err)
	}
}

func decodeInfer(t *testing.T, rec *httptest.ResponseRecorder) inferResponse {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("POST /infer: status %d, body %s", rec.Code, rec.Body)
	}
	var r inferResponse
	decodeStrict(t, rec, &r)
	return r
}
