package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/fleetplan/fleetplan/scheduler"
)

// userAgent is sent with every webhook request.
const userAgent = "fleetplan-notify/1"

// httpSender POSTs notifications as JSON (webhook: the Notification;
// slack: a chat message) through a retrying client.
type httpSender struct {
	typ     string
	url     *url.URL
	headers http.Header
	client  *retryablehttp.Client
	red     *redactor
}

// attemptsKey holds a *int counting a delivery's attempts in its request
// context, so that each delivery counts its own.
type attemptsKey struct{}

func newHTTPSender(spec scheduler.NotifierSpec, res *resolver, opts *Options, red *redactor, log hclog.Logger) (*httpSender, error) {
	if len(spec.URL) == 0 {
		return nil, errors.New("no url; give the notify block a url")
	}
	raw, err := res.value(spec.URL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case err != nil:
		// url.Parse quotes the whole URL in its error: only say where it
		// came from.
		return nil, fmt.Errorf("the url %s is not a URL", spec.URL)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("the url %s must be an http:// or https:// URL", spec.URL)
	case u.Host == "":
		return nil, fmt.Errorf("the url %s has no host", spec.URL)
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			red.add(p)
		}
	}
	// The path and query of a webhook URL often are its credential (chat
	// incoming webhooks): they are never shown either.
	if u.Path != "" && u.Path != "/" {
		red.add(u.Path)
	}
	red.add(u.RawQuery)
	s := &httpSender{typ: spec.Type, url: u, headers: http.Header{}, red: red}
	for k, v := range spec.Headers {
		val, err := res.value(v)
		if err != nil {
			return nil, fmt.Errorf("header %s: %w", k, err)
		}
		if strings.ContainsAny(val, "\r\n") {
			return nil, fmt.Errorf("header %s: the value of %s holds a line break; fix the secret's value", k, v)
		}
		s.headers.Set(k, val)
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = cleanhttp.DefaultPooledClient()
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = hc
	c.Logger = &leveledLogger{log: log, red: red}
	c.RetryMax = opts.RetryMax
	c.RetryWaitMin = opts.RetryWaitMin
	c.RetryWaitMax = opts.RetryWaitMax
	c.CheckRetry = retryablehttp.DefaultRetryPolicy
	c.Backoff = cappedBackoff
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	c.RequestLogHook = func(_ retryablehttp.Logger, req *http.Request, _ int) {
		if n, ok := req.Context().Value(attemptsKey{}).(*int); ok {
			*n++
		}
	}
	s.client = c
	return s, nil
}

// cappedBackoff is retryablehttp's DefaultBackoff (exponential; the
// Retry-After of a 429 or 503 when the server sends one) capped at max, so
// that a server asking for an hour does not hold a delivery that long: the
// per-delivery timeout ends it first anyway.
func cappedBackoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	d := retryablehttp.DefaultBackoff(min, max, attempt, resp)
	if d > max {
		d = max
	}
	if d < 0 {
		d = 0
	}
	return d
}

func (s *httpSender) send(ctx context.Context, n Notification) (int, error) {
	var body []byte
	var err error
	if s.typ == scheduler.NotifierSlack {
		body, err = json.Marshal(SlackMessage(n))
	} else {
		body, err = json.Marshal(n)
	}
	if err != nil {
		return 0, fmt.Errorf("encoding the notification: %w", err)
	}
	attempts := 0
	ctx = context.WithValue(ctx, attemptsKey{}, &attempts)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, s.url.String(), bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", redactURL(s.url), unwrapURLError(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	for k, v := range s.headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v[0]
			continue
		}
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return attempts, s.red.err(fmt.Errorf("POST %s: %w (after %d attempts)", redactURL(s.url), unwrapURLError(err), attempts))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode/100 == 2 {
		return attempts, nil
	}
	msg := fmt.Sprintf("POST %s: %s", redactURL(s.url), resp.Status)
	if b := snippet(string(data), 200); b != "" {
		msg += ": " + b
	}
	if retryable, _ := retryablehttp.DefaultRetryPolicy(context.Background(), resp, nil); retryable {
		msg += fmt.Sprintf(" (giving up after %d attempts)", attempts)
	} else {
		msg += " (not retried: the server refused the request; check the url and headers)"
	}
	return attempts, s.red.err(errors.New(msg))
}

// unwrapURLError drops *url.Error's wrapping, which repeats the full URL
// (whose path may be a secret).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// snippet shortens an answer's body to one line of at most n bytes.
func snippet(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// leveledLogger adapts an hclog logger to retryablehttp, redacting every
// value (retryablehttp logs URLs with their path). Its per-attempt messages
// are one level lower than it says: the delivery's own line reports the
// outcome.
type leveledLogger struct {
	log hclog.Logger
	red *redactor
}

func (l *leveledLogger) args(kv []any) []any {
	out := make([]any, len(kv))
	for i, v := range kv {
		if i%2 == 0 {
			out[i] = v
			continue
		}
		switch x := v.(type) {
		case string:
			out[i] = l.red.text(x)
		case error:
			out[i] = l.red.text(x.Error())
		case int, int64, bool, time.Duration, float64:
			out[i] = x
		case fmt.Stringer:
			out[i] = l.red.text(x.String())
		default:
			out[i] = l.red.text(fmt.Sprint(x))
		}
	}
	return out
}

func (l *leveledLogger) Error(msg string, kv ...any) { l.log.Warn(l.red.text(msg), l.args(kv)...) }
func (l *leveledLogger) Warn(msg string, kv ...any)  { l.log.Warn(l.red.text(msg), l.args(kv)...) }
func (l *leveledLogger) Info(msg string, kv ...any)  { l.log.Debug(l.red.text(msg), l.args(kv)...) }
func (l *leveledLogger) Debug(msg string, kv ...any) { l.log.Trace(l.red.text(msg), l.args(kv)...) }
