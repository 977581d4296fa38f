package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

var testNotification = Notification{
	Kind:    NotifyRollback,
	Time:    time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
	Rollout: "edgeinfer",
	RunID:   "r-42",
	Version: "1.4.0",
	Phase:   "canary",
	Message: "L4 functional failed on 2 of 2 canary devices",
	Numbers: map[string]float64{"failed_percent": 100, "p95_latency_ms": 412.5},
}

// newTestWebhook returns a webhook notifier for url with a short backoff
// and its logs kept in logs.
func newTestWebhook(t *testing.T, url string, extra map[string]string) (*webhookNotifier, *bytes.Buffer) {
	t.Helper()
	w := newWebhookNotifier()
	w.backoff = time.Millisecond
	var logs bytes.Buffer
	w.SetLogger(hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Trace}))
	cfg := map[string]string{"url": url}
	for k, v := range extra {
		cfg[k] = v
	}
	configure(t, w, cfg)
	return w, &logs
}

func TestWebhookPayload(t *testing.T) {
	type request struct {
		method, path, contentType, auth string
		body                            []byte
	}
	got := make(chan request, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- request{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body}
	}))
	defer srv.Close()

	w, _ := newTestWebhook(t, srv.URL+"/hooks/fleet", map[string]string{
		"headers": `{"Authorization": "Bearer s3cret"}`,
		"timeout": "5s",
	})
	if err := w.Notify(context.Background(), testNotification); err != nil {
		t.Fatalf("Notify: %v", err)
	}
	r := <-got
	if r.method != "POST" || r.path != "/hooks/fleet" || r.contentType != "application/json" || r.auth != "Bearer s3cret" {
		t.Errorf("request = %s %s, Content-Type %q, Authorization %q", r.method, r.path, r.contentType, r.auth)
	}
	var n Notification
	if err := json.Unmarshal(r.body, &n); err != nil {
		t.Fatalf("payload %s: %v", r.body, err)
	}
	if !reflect.DeepEqual(n, testNotification) {
		t.Errorf("payload = %+v, want %+v", n, testNotification)
	}
	for _, field := range []string{`"kind":"rollback"`, `"run_id":"r-42"`, `"numbers":{`} {
		if !bytes.Contains(r.body, []byte(field)) {
			t.Errorf("payload %s lacks %s", r.body, field)
		}
	}
}

func TestWebhookRetries(t *testing.T) {
	tests := []struct {
		name     string
		answers  []int // status per attempt; the last repeats
		wantErr  bool
		attempts int32
		errHas   []string
	}{
		{"success", []int{204}, false, 1, nil},
		{"500 then success", []int{500, 200}, false, 2, nil},
		{"429, 503 then success", []int{429, 503, 202}, false, 3, nil},
		{"gives up after 3 retries", []int{500}, true, 4, []string{"giving up after 4 attempts", "500 Internal Server Error", "database is down"}},
		{"400 is not retried", []int{400}, true, 1, []string{"400 Bad Request", "database is down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := int(attempts.Add(1))
				code := tt.answers[min(n, len(tt.answers))-1]
				if code >= 300 {
					http.Error(w, "database is down", code)
					return
				}
				w.WriteHeader(code)
			}))
			defer srv.Close()
			w, logs := newTestWebhook(t, srv.URL+"/T000/B000/secret-token", nil)
			err := w.Notify(context.Background(), testNotification)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if got := attempts.Load(); got != tt.attempts {
				t.Errorf("attempts = %d, want %d", got, tt.attempts)
			}
			if err != nil {
				wantContains(t, "error", err.Error(), tt.errHas...)
				var se *HTTPStatusError
				if !errors.As(err, &se) || se.Code != tt.answers[len(tt.answers)-1] {
					t.Errorf("errors.As(%v, *HTTPStatusError) = %v", err, se)
				}
				if strings.Contains(err.Error(), "secret-token") {
					t.Errorf("error %q shows the URL's secret path", err)
				}
			}
			if strings.Contains(logs.String(), "secret-token") {
				t.Errorf("logs show the URL's secret path:\n%s", logs)
			}
			if retries := strings.Count(logs.String(), "webhook failed, retrying"); retries != int(tt.attempts)-1 {
				t.Errorf("logged %d retries, want %d:\n%s", retries, tt.attempts-1, logs)
			}
		})
	}
}

func TestWebhookConnectionRefused(t *testing.T) {
	w, _ := newTestWebhook(t, "http://"+refusedAddr(t)+"/hook", nil)
	err := w.Notify(context.Background(), testNotification)
	if err == nil {
		t.Fatal("Notify to a closed port succeeded")
	}
	wantContains(t, "error", err.Error(), "giving up after 4 attempts", "connection refused")
	if strings.Contains(err.Error(), "/hook") {
		t.Errorf("error %q shows the URL path", err)
	}
}

func TestWebhookCancelDuringBackoff(t *testing.T) {
	first := make(chan struct{})
	var attempts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if attempts.Add(1) == 1 {
			close(first)
		}
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	w, _ := newTestWebhook(t, srv.URL, nil)
	w.backoff = time.Hour // only cancellation can end the wait
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-first
		cancel()
	}()
	err := w.Notify(ctx, testNotification)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("attempts = %d, want 1", n)
	}
}

func TestWebhookAttemptTimeout(t *testing.T) {
	var attempts atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: only then does the server notice the client
		// hanging up and cancel r.Context().
		io.Copy(io.Discard, r.Body)
		if attempts.Add(1) == 1 {
			select { // the first attempt hangs past its timeout
			case <-r.Context().Done():
			case <-done:
			}
		}
	}))
	defer srv.Close()
	defer close(done)
	w, _ := newTestWebhook(t, srv.URL, map[string]string{"timeout": "100ms"})
	if err := w.Notify(context.Background(), testNotification); err != nil {
		t.Fatalf("Notify: %v (a hung attempt should time out and be retried)", err)
	}
	if n := attempts.Load(); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
}

func TestWebhookNotConfigured(t *testing.T) {
	w, _ := NewNotifier("webhook")
	if err := w.Notify(context.Background(), testNotification); !errors.Is(err, errNotConfigured) {
		t.Errorf("err = %v, want errNotConfigured", err)
	}
}
