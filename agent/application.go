package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
)

// DefaultMetricsPath is where the agent reads an application's metrics.
const DefaultMetricsPath = "/metrics"

// maxBody bounds what the agent reads from an application endpoint.
const maxBody = 64 << 10

// maxHealthLine bounds the health JSON echoed in the layer 3 output, so that
// the output fits in what Consul keeps of a check output (4 KiB by
// default).
const maxHealthLine = 2048

// Instance is one fleetplan-managed service instance on the device: a
// service of a slot job (tagged fleetplan-slot=<slot>) that carries the
// Nomad-managed layer 3 check, i.e. the service of the health port.
type Instance struct {
	ServiceID string
	Service   string
	// App is the fleetplan application (the slot job's meta
	// fleetplan_app).
	App     string
	Address string
	Port    int
	Slot    string
	// Version is the instance's fleetplan-version tag: the version the
	// release says it runs.
	Version string
}

// HostPort is the instance's address as host:port.
func (i Instance) HostPort() string { return net.JoinHostPort(i.Address, strconv.Itoa(i.Port)) }

// healthDoc is what an application's health endpoint answers.
type healthDoc struct {
	Status  *string `json:"status"`
	Version *string `json:"version"`
}

// appMetrics are the fields the agent reads from an application's metrics
// JSON. rss_mb is taken when the application reports it, else rss_bytes.
type appMetrics struct {
	ErrorRate     *float64 `json:"error_rate"`
	P95LatencyMS  *float64 `json:"p95_latency_ms"`
	RSSBytes      *float64 `json:"rss_bytes"`
	RSSMB         *float64 `json:"rss_mb"`
	RequestsTotal *float64 `json:"requests_total"`
}

// appProber fetches an application's health and metrics endpoints.
type appProber struct {
	client *http.Client
	now    func() time.Time
}

// fetch GETs url (asking for JSON) and returns the status code, the body (at most maxBody)
// and how long the answer took.
func (p *appProber) fetch(ctx context.Context, url string) (int, []byte, time.Duration, error) {
	return p.fetchAccept(ctx, url, "application/json")
}

// fetchAccept is fetch with another Accept header.
func (p *appProber) fetchAccept(ctx context.Context, url, accept string) (int, []byte, time.Duration, error) {
	start := p.now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Accept", accept)
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, p.now().Sub(start), err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	took := p.now().Sub(start)
	if err != nil {
		return resp.StatusCode, nil, took, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, body, took, nil
}

// ApplicationInput is what one layer 3 agent probe judges.
type ApplicationInput struct {
	Instance Instance
	// HealthPath on the instance's address.
	HealthPath    string
	ExpectVersion bool
}

// ProbeApplication runs the health part of the layer 3 agent probe: it
// fetches the instance's health endpoint and judges it (healthy passes,
// degraded warns, unhealthy, an unreadable answer or a version other than
// the instance's fleetplan-version tag fails). The output (a verdict line,
// then the health line) is the contract described in the package
// documentation; the agent adds its metric findings to the verdict line
// (withFindings). It holds no figure that changes at every run (no
// timing), so that it stays the same while the verdict does.
//
// The request may take up to fetch.
func (p *appProber) ProbeApplication(ctx context.Context, in ApplicationInput, fetch time.Duration) (plugin.Status, string) {
	inst := in.Instance
	var status plugin.Status
	var summary, healthLine string
	if err := ValidProbePath(in.HealthPath); err != nil {
		// I11: a path from Consul KV never leads the agent to another host.
		status, summary = Critical, oneLine(fmt.Sprintf("critical: the policy's health path is refused: %v; the agent fetches only paths on the instance (%s)", err, inst.HostPort()))
	} else {
		hctx, cancel := context.WithTimeout(ctx, fetch)
		status, summary, healthLine = p.judgeHealth(hctx, instanceURL(inst, in.HealthPath), inst, in.ExpectVersion)
		cancel()
	}

	out := summary + "\n"
	if healthLine != "" {
		out += "health: " + healthLine + "\n"
	}
	return status, out
}

// fillAppMetrics reads the application's metrics endpoint into m.
func (p *appProber) fillAppMetrics(ctx context.Context, url string, m *contract.Metrics) error {
	am, err := p.fetchMetrics(ctx, url)
	if err != nil {
		return err
	}
	m.ErrorRate, m.P95LatencyMS, m.RequestsTotal = am.ErrorRate, am.P95LatencyMS, am.RequestsTotal
	switch {
	case am.RSSMB != nil:
		m.RSSMB = am.RSSMB
	case am.RSSBytes != nil:
		m.RSSMB = ptr(math.Round(*am.RSSBytes/(1<<20)*10) / 10)
	}
	return nil
}

// judgeHealth fetches and judges the health endpoint. The summary line
// never contains a '{', so that the first JSON object of the output is the
// application's health answer (the watcher reads status and version from
// it).
func (p *appProber) judgeHealth(ctx context.Context, url string, inst Instance, expectVersion bool) (plugin.Status, string, string) {
	code, body, took, err := p.fetch(ctx, url)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return Critical, oneLine(fmt.Sprintf("critical: GET %s gave no answer within the timeout (%s)", url, took.Round(100*time.Millisecond))), ""
		}
		return Critical, oneLine(fmt.Sprintf("critical: GET %s failed: %v", url, err)), ""
	}
	// No timing here: the output must not change while the verdict does
	// not.
	_ = took
	answered := fmt.Sprintf("GET %s: %d", url, code)

	var doc healthDoc
	healthLine := compactJSON(body)
	if err := json.Unmarshal(body, &doc); err != nil || (doc.Status == nil && doc.Version == nil) {
		msg := "the answer is not the health JSON"
		if err != nil {
			msg += " (" + err.Error() + ")"
		}
		return Critical, oneLine(fmt.Sprintf("critical: %s; %s", msg, answered)), ""
	}
	st, ver := deref(doc.Status), deref(doc.Version)

	verdict := Passing
	var why []string
	switch st {
	case "healthy":
	case "degraded":
		verdict = Warning
		why = append(why, "the application reports degraded")
	case "unhealthy":
		verdict = Critical
		why = append(why, "the application reports unhealthy")
	case "":
		verdict = Critical
		why = append(why, "the answer has no status")
	default:
		verdict = Critical
		why = append(why, fmt.Sprintf("unknown status %q (want healthy, degraded or unhealthy)", st))
	}
	if code < 200 || code > 299 {
		// An unhealthy answer is often a 503; any other code fails too.
		verdict = Critical
		if st != "unhealthy" {
			why = append(why, fmt.Sprintf("HTTP %d", code))
		}
	}
	versionNote := fmt.Sprintf("version %s", orNone(ver))
	if expectVersion && inst.Version != "" {
		// I4: "v2.0.0" and "2.0.0+build.5" report release 2.0.0.
		if !scheduler.SameVersion(ver, inst.Version) {
			verdict = Critical
			why = append(why, fmt.Sprintf("version %s but the instance runs release %s", orNone(ver), contract.VersionTag(inst.Version)))
		} else {
			versionNote = fmt.Sprintf("version %s as released (%s)", ver, contract.VersionTag(inst.Version))
		}
	}
	summary := fmt.Sprintf("%s: %s", verdict, st)
	if len(why) > 0 {
		summary = fmt.Sprintf("%s: %s", verdict, strings.Join(why, "; "))
	}
	summary += "; " + versionNote + "; " + answered
	return verdict, oneLine(summary), healthLine
}

// fetchMetrics reads the application's metrics JSON.
func (p *appProber) fetchMetrics(ctx context.Context, url string) (appMetrics, error) {
	code, body, _, err := p.fetch(ctx, url)
	if err != nil {
		return appMetrics{}, fmt.Errorf("GET %s failed: %w", url, err)
	}
	if code != http.StatusOK {
		return appMetrics{}, fmt.Errorf("GET %s: HTTP %d", url, code)
	}
	var m appMetrics
	if err := json.Unmarshal(body, &m); err != nil {
		return appMetrics{}, fmt.Errorf("GET %s: not JSON: %w", url, err)
	}
	return m, nil
}

// compactJSON returns the body as one line of compact JSON, cut to
// maxHealthLine (a cut JSON still yields its first fields to a reader that
// searches for them), or "" when it is not JSON.
func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, bytes.TrimSpace(b)); err != nil {
		return ""
	}
	s := buf.String()
	if len(s) > maxHealthLine {
		s = s[:maxHealthLine] + "..."
	}
	return s
}

// oneLine makes a summary safe for the output contract: one line, and no
// braces (the first '{' of the output must start the health JSON).
var lineSanitizer = strings.NewReplacer("\n", " ", "\r", " ", "{", "(", "}", ")")

func oneLine(s string) string { return lineSanitizer.Replace(s) }

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// withFindings adds the metric findings to a layer 3 output: the verdict
// becomes the worst of the health verdict and the findings, and the
// findings' reasons lead the verdict line.
func withFindings(status plugin.Status, out string, fs []finding) (plugin.Status, string) {
	if len(fs) == 0 {
		return status, out
	}
	first, rest, _ := strings.Cut(out, "\n")
	_, healthPart, ok := strings.Cut(first, ": ")
	if !ok {
		healthPart = first
	}
	st := worse(status, worstFinding(fs))
	reasons := make([]string, len(fs))
	for i, f := range fs {
		reasons[i] = f.reason
	}
	line := fmt.Sprintf("%s: %s; %s", st, strings.Join(reasons, "; "), healthPart)
	if rest != "" {
		return st, oneLine(line) + "\n" + rest
	}
	return st, oneLine(line) + "\n"
}
