package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHTTPJSONProbe(t *testing.T) {
	jsonAnswer := func(body string, delay time.Duration) func(*fakeClock) http.HandlerFunc {
		return func(clock *fakeClock) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				clock.Advance(delay)
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, body)
			}
		}
	}
	base := map[string]string{
		"path":        "/infer",
		"input":       `{"image": "cat.jpg"}`,
		"expect":      `{"label": "cat"}`,
		"max_latency": "250ms",
	}
	tests := []struct {
		name    string
		config  map[string]string // merged over base; "" deletes
		handler func(*fakeClock) http.HandlerFunc
		refused bool
		status  Status
		output  []string
	}{
		{
			name:    "pass",
			handler: jsonAnswer(`{"label": "cat", "score": 0.97}`, 12*time.Millisecond),
			status:  StatusPassing,
			output:  []string{`POST /infer: 200 in 12ms (max 250ms); label = "cat" as expected`},
		},
		{
			name:    "wrong field",
			handler: jsonAnswer(`{"label": "dog"}`, 12*time.Millisecond),
			status:  StatusCritical,
			output:  []string{`label = "dog", expected "cat"`},
		},
		{
			name:    "missing field",
			handler: jsonAnswer(`{"class": "cat"}`, time.Millisecond),
			status:  StatusCritical,
			output:  []string{`label missing, expected "cat"`},
		},
		{
			name:    "number and bool fields compared as JSON text",
			config:  map[string]string{"expect": `{"count": "3", "ok": true, "score": 0.9}`},
			handler: jsonAnswer(`{"count": 3, "ok": true, "score": 0.90}`, time.Millisecond),
			status:  StatusPassing,
			output:  []string{`count = 3, ok = true, score = 0.90 as expected`},
		},
		{
			name:    "wrong number",
			config:  map[string]string{"expect": `{"count": 3}`},
			handler: jsonAnswer(`{"count": 4}`, time.Millisecond),
			status:  StatusCritical,
			output:  []string{`count = 4, expected 3`},
		},
		{
			name:    "slow",
			handler: jsonAnswer(`{"label": "cat"}`, 300*time.Millisecond),
			status:  StatusCritical,
			output:  []string{`200 in 300ms (max 250ms exceeded)`, `label = "cat" as expected`},
		},
		{
			name:    "near the latency bound",
			handler: jsonAnswer(`{"label": "cat"}`, 220*time.Millisecond),
			status:  StatusWarning,
			output:  []string{`200 in 220ms (max 250ms; warning above 200ms)`},
		},
		{
			name:    "exactly at the bound is a warning, not critical",
			handler: jsonAnswer(`{"label": "cat"}`, 250*time.Millisecond),
			status:  StatusWarning,
		},
		{
			name:    "slow and wrong",
			handler: jsonAnswer(`{"label": "dog"}`, time.Second),
			status:  StatusCritical,
			output:  []string{`max 250ms exceeded`, `label = "dog", expected "cat"`},
		},
		{
			name:    "no max_latency",
			config:  map[string]string{"max_latency": ""},
			handler: jsonAnswer(`{"label": "cat"}`, time.Hour),
			status:  StatusPassing,
			output:  []string{`POST /infer: 200 in 1h0m0s; label = "cat" as expected`},
		},
		{
			name: "500",
			handler: func(*fakeClock) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "model not loaded", http.StatusInternalServerError)
				}
			},
			status: StatusCritical,
			output: []string{`POST /infer: 500 Internal Server Error in`, `"model not loaded"`},
		},
		{
			name:    "non-JSON",
			handler: jsonAnswer(`<html>oops</html>`, 0),
			status:  StatusCritical,
			output:  []string{`body is not JSON: "<html>oops</html>"`},
		},
		{
			name:    "JSON but not an object",
			handler: jsonAnswer(`["cat"]`, 0),
			status:  StatusCritical,
			output:  []string{`body is JSON but not an object`},
		},
		{
			name:    "no expect: any JSON passes",
			config:  map[string]string{"expect": ""},
			handler: jsonAnswer(`[1, 2]`, 0),
			status:  StatusPassing,
			output:  []string{`; body is JSON`},
		},
		{
			name:    "connection refused",
			refused: true,
			status:  StatusCritical,
			output:  []string{`POST /infer: request failed after`, `connection refused`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			addr := refusedAddr(t)
			if !tt.refused {
				srv := httptest.NewServer(tt.handler(clock))
				t.Cleanup(srv.Close)
				addr = srv.Listener.Addr().String()
			}
			cfg := map[string]string{}
			for k, v := range base {
				cfg[k] = v
			}
			for k, v := range tt.config {
				if v == "" {
					delete(cfg, k)
				} else {
					cfg[k] = v
				}
			}
			p := newHTTPJSONProbe()
			p.now = clock.Now
			configure(t, p, cfg)
			res, err := p.Probe(context.Background(), Target{Address: addr, Node: "edge-1", Service: "infer"})
			if err != nil {
				t.Fatalf("Probe: %v", err)
			}
			if res.Status != tt.status {
				t.Errorf("status = %s, want %s (output %q)", res.Status, tt.status, res.Output)
			}
			wantContains(t, "output", res.Output, tt.output...)
		})
	}
}

func TestHTTPJSONProbeRequest(t *testing.T) {
	type seen struct {
		method, path, contentType, auth, host string
		body                                  map[string]any
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{method: r.Method, path: r.URL.RequestURI(), contentType: r.Header.Get("Content-Type"),
			auth: r.Header.Get("Authorization"), host: r.Host}
		if err := json.NewDecoder(r.Body).Decode(&s.body); err != nil {
			t.Errorf("request body: %v", err)
		}
		got <- s
		io.WriteString(w, `{"label":"cat"}`)
	}))
	defer srv.Close()

	p, err := NewProbe("http-json")
	if err != nil {
		t.Fatal(err)
	}
	configure(t, p, map[string]string{
		"path":    "/v1/infer?debug=1",
		"method":  "put",
		"input":   `{"image": "cat.jpg", "n": 1}`,
		"expect":  `{"label": "cat"}`,
		"headers": `{"Authorization": "Bearer t0k", "Host": "infer.local"}`,
	})
	res, err := p.Probe(context.Background(), Target{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusPassing || res.Latency <= 0 {
		t.Errorf("result = %+v, want passing with a measured latency", res)
	}
	s := <-got
	if s.method != "PUT" || s.path != "/v1/infer?debug=1" || s.contentType != "application/json" ||
		s.auth != "Bearer t0k" || s.host != "infer.local" {
		t.Errorf("request = %+v", s)
	}
	if s.body["image"] != "cat.jpg" || s.body["n"] != 1.0 {
		t.Errorf("request body = %v", s.body)
	}
}

func TestHTTPJSONProbeDefaults(t *testing.T) {
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.URL.Path
		io.WriteString(w, `{}`)
	}))
	defer srv.Close()
	p, _ := NewProbe("http-json")
	res, err := p.Probe(context.Background(), Target{Address: srv.Listener.Addr().String()})
	if err != nil || res.Status != StatusPassing {
		t.Fatalf("Probe with defaults = %+v, %v", res, err)
	}
	if r := <-got; r != "POST /" {
		t.Errorf("request = %q, want POST /", r)
	}
}

func TestHTTPJSONProbeTimeout(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // never answers
		case <-r.Context().Done():
		case <-done:
		}
	}))
	defer srv.Close()
	defer close(done)
	p, _ := NewProbe("http-json")
	configure(t, p, map[string]string{"timeout": "50ms"})
	res, err := p.Probe(context.Background(), Target{Address: srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusCritical {
		t.Errorf("status = %s, want critical", res.Status)
	}
	wantContains(t, "output", res.Output, "no complete answer within the timeout of 50ms")
}

func TestHTTPJSONProbeCallerCancelled(t *testing.T) {
	arrived, done := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	defer srv.Close()
	defer close(done)
	p, _ := NewProbe("http-json")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-arrived
		cancel()
	}()
	_, err := p.Probe(ctx, Target{Address: srv.Listener.Addr().String()})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled: no verdict when the caller gives up", err)
	}
}

func TestHTTPJSONProbeNoAddress(t *testing.T) {
	p, _ := NewProbe("http-json")
	if _, err := p.Probe(context.Background(), Target{}); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("err = %v, want an error about the missing address", err)
	}
}
