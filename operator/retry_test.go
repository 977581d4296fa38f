package operator

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetryTransport(t *testing.T) {
	var calls atomic.Int32
	fail := atomic.Int32{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if fail.Add(-1) >= 0 {
			http.Error(w, "rpc error: leader unavailable", http.StatusInternalServerError)
			return
		}
		if r.Method == http.MethodPut && string(body) != "payload" {
			http.Error(w, "body lost on retry: "+string(body), http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	client := &http.Client{Transport: &retryTransport{next: http.DefaultTransport, attempts: 5, base: time.Millisecond, max: 5 * time.Millisecond}}

	for _, tt := range []struct {
		name      string
		method    string
		failures  int32
		wantCode  int
		wantCalls int32
	}{
		{"read after two 500s", http.MethodGet, 2, 200, 3},
		{"write after a 500 resends its body", http.MethodPut, 1, 200, 2},
		{"gives up after the attempts", http.MethodGet, 10, 500, 5},
		{"no error, one call", http.MethodGet, 0, 200, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			calls.Store(0)
			fail.Store(tt.failures)
			req, _ := http.NewRequest(tt.method, srv.URL, strings.NewReader("payload"))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || calls.Load() != tt.wantCalls {
				t.Fatalf("status %d after %d calls, want %d after %d", resp.StatusCode, calls.Load(), tt.wantCode, tt.wantCalls)
			}
		})
	}

	// A refused connection is retried (nothing was sent), then reported.
	addr := srv.Listener.Addr().String()
	srv.Close()
	req, _ := http.NewRequest(http.MethodPut, "http://"+addr, strings.NewReader("payload"))
	if _, err := client.Do(req); err == nil {
		t.Fatal("a closed server answered")
	}
}
