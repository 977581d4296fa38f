package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

const (
	webhookName = "webhook"
	// webhookRetries is how many times a failed POST is retried (so at
	// most webhookRetries+1 attempts).
	webhookRetries = 3
	// webhookBackoff is the wait before the first retry; it doubles.
	webhookBackoff = 500 * time.Millisecond
)

var webhookSchema = []Field{
	{Name: "url", Type: FieldString, Required: true, Description: "http(s) URL the notification is POSTed to as JSON"},
	{Name: "timeout", Type: FieldDuration, Description: "timeout of each attempt, default 10s"},
	{Name: "headers", Type: FieldStringMap, Description: `extra request headers, a JSON object, e.g. {"Authorization": "Bearer ..."}`},
}

// HTTPStatusError is a non-2xx answer to a webhook.
type HTTPStatusError struct {
	URL    string // redacted: scheme and host only
	Code   int
	Status string // e.g. "500 Internal Server Error"
	Body   string // a snippet of the answer
}

func (e *HTTPStatusError) Error() string {
	s := fmt.Sprintf("POST %s: %s", e.URL, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Temporary reports whether retrying may help: server errors, 408, 429.
func (e *HTTPStatusError) Temporary() bool {
	return e.Code >= 500 || e.Code == http.StatusRequestTimeout || e.Code == http.StatusTooManyRequests
}

type webhookConfig struct {
	url     *url.URL
	timeout time.Duration
	headers map[string]string
}

// webhookNotifier POSTs each Notification as JSON, retrying failures that
// may be temporary with a doubling backoff.
type webhookNotifier struct {
	cfg     atomic.Pointer[webhookConfig]
	client  *http.Client
	backoff time.Duration // before the first retry; tests shorten it

	mu     sync.Mutex
	logger hclog.Logger
}

func newWebhookNotifier() *webhookNotifier {
	return &webhookNotifier{
		client: &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			TLSHandshakeTimeout: 10 * time.Second,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		}},
		backoff: webhookBackoff,
	}
}

func (w *webhookNotifier) PluginInfo() Info {
	return Info{Name: webhookName, Type: TypeNotifier, Version: BuiltinVersion}
}

func (w *webhookNotifier) ConfigSchema() []Field { return slices.Clone(webhookSchema) }

// SetLogger sets the logger retries are reported to (default hclog.Default()).
func (w *webhookNotifier) SetLogger(l hclog.Logger) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.logger = l
}

func (w *webhookNotifier) log() hclog.Logger {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.logger == nil {
		return hclog.Default()
	}
	return w.logger
}

func (w *webhookNotifier) SetConfig(_ context.Context, config map[string]string) error {
	v, cp := parseConfig(webhookName, webhookSchema, config)
	c := &webhookConfig{timeout: v.duration("timeout", 10*time.Second), headers: v.stringMap("headers")}
	if s, ok := v["url"].(string); ok && strings.TrimSpace(s) != "" {
		u, err := url.Parse(strings.TrimSpace(s))
		switch {
		case err != nil:
			cp.addf("url", s, "not a URL (%v)", errors.Unwrap(err))
		case u.Scheme != "http" && u.Scheme != "https":
			cp.addf("url", s, "must be an http:// or https:// URL")
		case u.Host == "":
			cp.addf("url", s, "has no host")
		}
		c.url = u
	}
	for k := range c.headers {
		if !validHeaderName(k) {
			cp.addf("headers", config["headers"], "%q is not a valid header name", k)
		}
	}
	if err := cp.err(); err != nil {
		return err
	}
	w.cfg.Store(c)
	return nil
}

// Notify POSTs n. It retries network errors and 5xx, 408 and 429 answers
// up to 3 times, waiting 0.5s, 1s, 2s; other answers fail at once. The
// error of a non-2xx answer is an *HTTPStatusError. Cancelling ctx stops
// the attempt in flight and the wait.
func (w *webhookNotifier) Notify(ctx context.Context, n Notification) error {
	c := w.cfg.Load()
	if c == nil {
		return fmt.Errorf("webhook notifier: %w", errNotConfigured)
	}
	body, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("webhook notifier: encoding the notification: %w", err)
	}
	wait := w.backoff
	var last error
	for attempt := 1; ; attempt++ {
		last = w.post(ctx, c, body)
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("webhook notifier: %w (attempt %d: %v)", ctx.Err(), attempt, last)
		}
		var se *HTTPStatusError
		if errors.As(last, &se) && !se.Temporary() {
			return fmt.Errorf("webhook notifier: %w", last)
		}
		if attempt > webhookRetries {
			return fmt.Errorf("webhook notifier: giving up after %d attempts: %w", attempt, last)
		}
		w.log().Warn("webhook failed, retrying", "url", redactURL(c.url), "attempt", attempt,
			"retry_in", wait, "kind", n.Kind, "rollout", n.Rollout, "error", last)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("webhook notifier: %w (after %d attempts; last: %v)", ctx.Err(), attempt, last)
		case <-t.C:
		}
		wait *= 2
	}
}

// post makes one attempt.
func (w *webhookNotifier) post(ctx context.Context, c *webhookConfig, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "fleetplan/"+BuiltinVersion)
	for k, v := range c.headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		// *url.Error repeats the full URL, whose path may hold a token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", redactURL(c.url), err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &HTTPStatusError{
		URL:    redactURL(c.url),
		Code:   resp.StatusCode,
		Status: resp.Status,
		Body:   snippet(string(data), 200),
	}
}

// redactURL shows only the scheme and host: webhook URLs (Slack, Teams)
// carry their secret in the path or query.
func redactURL(u *url.URL) string {
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
