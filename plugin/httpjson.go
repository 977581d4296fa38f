package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	httpJSONName = "http-json"
	// maxResponseBody bounds what the http-json probe reads of an answer.
	maxResponseBody = 1 << 20
	// warnLatencyPercent of max_latency turns a passing answer into a warning.
	warnLatencyPercent = 80
)

var httpJSONSchema = []Field{
	{Name: "path", Type: FieldString, Description: `request path on the target, default "/"`},
	{Name: "method", Type: FieldString, Description: "HTTP method, default POST"},
	{Name: "input", Type: FieldString, Description: "request body, JSON text"},
	{Name: "expect", Type: FieldStringMap, Description: `expected top-level fields of the JSON answer, e.g. {"label": "cat"}`},
	{Name: "max_latency", Type: FieldDuration, Description: "slower answers are critical, above 80% of it a warning"},
	{Name: "timeout", Type: FieldDuration, Description: "request timeout, default 5s"},
	{Name: "headers", Type: FieldStringMap, Description: "extra request headers, a JSON object"},
}

var httpMethods = []string{"DELETE", "GET", "PATCH", "POST", "PUT"}

type httpJSONConfig struct {
	path       string
	method     string
	input      string
	expect     map[string]string
	maxLatency time.Duration // 0: no bound
	timeout    time.Duration
	headers    map[string]string
}

func defaultHTTPJSONConfig() *httpJSONConfig {
	return &httpJSONConfig{path: "/", method: http.MethodPost, timeout: 5 * time.Second}
}

// httpJSONProbe sends a JSON test input to the application and compares
// the answer's top-level fields and latency with the expected ones.
type httpJSONProbe struct {
	cfg    atomic.Pointer[httpJSONConfig]
	client *http.Client
	now    func() time.Time
}

func newHTTPJSONProbe() *httpJSONProbe {
	p := &httpJSONProbe{
		client: &http.Client{Transport: &http.Transport{
			// The target is a device-local instance: never via a proxy,
			// and a fresh connection each time so latencies compare.
			Proxy:             nil,
			DisableKeepAlives: true,
		},
			// The probe talks to the instance only: a redirect (to another
			// host, say) is answered as it is, never followed.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		now: time.Now,
	}
	p.cfg.Store(defaultHTTPJSONConfig())
	return p
}

func (p *httpJSONProbe) PluginInfo() Info {
	return Info{Name: httpJSONName, Type: TypeProbe, Version: BuiltinVersion}
}

func (p *httpJSONProbe) ConfigSchema() []Field { return slices.Clone(httpJSONSchema) }

func (p *httpJSONProbe) SetConfig(_ context.Context, config map[string]string) error {
	v, cp := parseConfig(httpJSONName, httpJSONSchema, config)
	c := defaultHTTPJSONConfig()
	if s, ok := v["path"].(string); ok {
		if !strings.HasPrefix(s, "/") {
			cp.addf("path", s, `must start with "/"`)
		} else if _, err := url.ParseRequestURI(s); err != nil {
			cp.addf("path", s, "not a valid request path")
		}
		c.path = s
	}
	if s, ok := v["method"].(string); ok {
		m := strings.ToUpper(strings.TrimSpace(s))
		if !slices.Contains(httpMethods, m) {
			cp.addf("method", s, "not one of %s", strings.Join(httpMethods, ", "))
		}
		c.method = m
	}
	if s := v.str("input", ""); s != "" {
		if err := unmarshalStrict(s, new(any)); err != nil {
			cp.addf("input", s, "not valid JSON (%v)", err)
		}
		c.input = s
	}
	c.expect = v.stringMap("expect")
	c.headers = v.stringMap("headers")
	for k := range c.headers {
		if !validHeaderName(k) {
			cp.addf("headers", config["headers"], "%q is not a valid header name", k)
		}
	}
	c.maxLatency = v.duration("max_latency", 0)
	c.timeout = v.duration("timeout", c.timeout)
	if err := cp.err(); err != nil {
		return err
	}
	p.cfg.Store(c)
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Probe sends the input and judges the answer. Everything about the target
// (refused, timed out, 5xx, not JSON, wrong field, too slow) is a critical
// or warning Result; an error means there is no verdict: the caller's
// context ended or the target has no address.
func (p *httpJSONProbe) Probe(ctx context.Context, target Target) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if target.Address == "" {
		return Result{}, errors.New("http-json probe: target has no address")
	}
	c := p.cfg.Load()
	what := c.method + " " + c.path

	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if c.input != "" {
		body = strings.NewReader(c.input)
	}
	req, err := http.NewRequestWithContext(rctx, c.method, "http://"+target.Address+c.path, body)
	if err != nil {
		return Result{}, fmt.Errorf("http-json probe: target address %q: %w", target.Address, err)
	}
	if c.input != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "fleetplan-probe/"+BuiltinVersion)
	for k, v := range c.headers {
		if http.CanonicalHeaderKey(k) == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}

	start := p.now()
	resp, err := p.client.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
		resp.Body.Close()
	}
	latency := p.now().Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		out := fmt.Sprintf("%s: request failed after %s: %v", what, fmtDuration(latency), err)
		if errors.Is(err, context.DeadlineExceeded) {
			out = fmt.Sprintf("%s: no complete answer within the timeout of %s", what, fmtDuration(c.timeout))
		}
		return Result{Status: StatusCritical, Output: out, Latency: latency}, nil
	}
	return judgeHTTPJSON(c, what, resp, data, latency), nil
}

// judgeHTTPJSON turns a complete answer into a verdict.
func judgeHTTPJSON(c *httpJSONConfig, what string, resp *http.Response, data []byte, latency time.Duration) Result {
	res := Result{Status: StatusPassing, Latency: latency}
	worse := func(s Status) {
		if s == StatusCritical || res.Status == StatusPassing {
			res.Status = s
		}
	}

	head := fmt.Sprintf("%s: %s in %s", what, statusText(resp), fmtDuration(latency))
	if c.maxLatency > 0 {
		warnAt := c.maxLatency * warnLatencyPercent / 100
		switch {
		case latency > c.maxLatency:
			worse(StatusCritical)
			head += fmt.Sprintf(" (max %s exceeded)", fmtDuration(c.maxLatency))
		case latency >= warnAt:
			worse(StatusWarning)
			head += fmt.Sprintf(" (max %s; warning above %s)", fmtDuration(c.maxLatency), fmtDuration(warnAt))
		default:
			head += fmt.Sprintf(" (max %s)", fmtDuration(c.maxLatency))
		}
	}

	if resp.StatusCode >= 400 {
		res.Status = StatusCritical
		res.Output = head + "; body: " + bodySnippet(data)
		return res
	}
	if len(data) > maxResponseBody {
		res.Status = StatusCritical
		res.Output = head + fmt.Sprintf("; body larger than %d bytes", maxResponseBody)
		return res
	}
	if !json.Valid(data) {
		res.Status = StatusCritical
		res.Output = head + "; body is not JSON: " + bodySnippet(data)
		return res
	}
	if len(c.expect) == 0 {
		res.Output = head + "; body is JSON"
		return res
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil || fields == nil {
		res.Status = StatusCritical
		res.Output = head + "; body is JSON but not an object: " + bodySnippet(data)
		return res
	}
	var wrong, right []string
	for _, name := range slices.Sorted(maps.Keys(c.expect)) {
		want := c.expect[name]
		raw, ok := fields[name]
		switch {
		case !ok:
			wrong = append(wrong, fmt.Sprintf("%s missing, expected %s", name, strconv.Quote(want)))
		case jsonMatches(raw, want):
			right = append(right, fmt.Sprintf("%s = %s", name, compactJSON(raw)))
		default:
			wrong = append(wrong, fmt.Sprintf("%s = %s, expected %s", name, compactJSON(raw), displayExpected(raw, want)))
		}
	}
	parts := []string{head}
	if len(wrong) > 0 {
		worse(StatusCritical)
		parts = append(parts, strings.Join(wrong, "; "))
	}
	if len(right) > 0 {
		parts = append(parts, strings.Join(right, ", ")+" as expected")
	}
	res.Output = strings.Join(parts, "; ")
	return res
}

func statusText(resp *http.Response) string {
	if resp.StatusCode < 400 {
		return strconv.Itoa(resp.StatusCode)
	}
	return resp.Status
}

func bodySnippet(data []byte) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "(empty)"
	}
	return strconv.Quote(snippet(string(data), 200))
}

// jsonMatches compares a JSON value with an expected value written as
// text: a string by its content, anything else by its JSON text, numbers
// also by value (so 0.90 matches "0.9").
func jsonMatches(raw json.RawMessage, want string) bool {
	if got, ok := scalarText(raw); ok {
		if got == want {
			return true
		}
		if raw[0] != '"' {
			g, err1 := strconv.ParseFloat(got, 64)
			w, err2 := strconv.ParseFloat(want, 64)
			return err1 == nil && err2 == nil && g == w
		}
		return false
	}
	return compactJSON(raw) == want
}

// displayExpected shows the expected value the way the actual one is shown:
// quoted next to a string, as is next to a number or bool.
func displayExpected(raw json.RawMessage, want string) string {
	if len(raw) > 0 && raw[0] != '"' && json.Valid([]byte(want)) {
		return want
	}
	return strconv.Quote(want)
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return snippet(string(raw), 80)
	}
	return snippet(b.String(), 80)
}
