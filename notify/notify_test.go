package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// syncBuffer is a log destination safe for the delivery goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger() (hclog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return hclog.New(&hclog.LoggerOptions{Output: buf, Level: hclog.Trace}), buf
}

// fastOpts retries quickly.
func fastOpts(log hclog.Logger) Options {
	return Options{Logger: log, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond, CloseTimeout: 30 * time.Second}
}

func webhook(name, url string, events ...string) scheduler.NotifierSpec {
	return scheduler.NotifierSpec{Type: scheduler.NotifierWebhook, Name: name, URL: scheduler.Literal(url), Events: events}
}

// recorder is a webhook endpoint that records what it receives.
type recorder struct {
	mu    sync.Mutex
	notes []Notification
	heads []http.Header
	times []time.Time
	// answer gives the status (and headers) of the n-th request (from 1).
	answer func(n int, w http.ResponseWriter) int
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var n Notification
	body, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(body, &n)
	rec.mu.Lock()
	rec.notes = append(rec.notes, n)
	rec.heads = append(rec.heads, r.Header.Clone())
	rec.times = append(rec.times, time.Now())
	count := len(rec.notes)
	rec.mu.Unlock()
	code := http.StatusOK
	if rec.answer != nil {
		code = rec.answer(count, w)
	}
	w.WriteHeader(code)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.notes)
}

func events(now time.Time) []scheduler.Event {
	return []scheduler.Event{
		{Time: now, Rollout: "app", RunID: "r1", Action: "switch", Outcome: "ok", Device: "d1"},
		{Time: now, Rollout: "app", RunID: "r1", Phase: scheduler.PhaseAwaitingApproval, Action: "await-approval", Outcome: "waiting", Detail: "canary passed its gate"},
		{Time: now, Rollout: "app", RunID: "r1", Phase: scheduler.PhaseWave, Stage: "wave 1", Action: "decision:rollback", Outcome: "ok", Detail: "wave 1 failed", Decision: &scheduler.Decision{
			Kind: scheduler.DecisionRollback, Numbers: map[string]float64{"failed": 2},
			Analysis: &scheduler.FailureAnalysis{Kind: scheduler.AnalysisCompatibility, Classes: []string{"rpi"}, Layer: 3, Attempted: 4, Failed: 2, ClassAttempted: 2, ClassFailed: 2},
		}},
		{Time: now, Rollout: "app", RunID: "r1", Action: "decision:halted", Outcome: "ok", Detail: "too many offline", Decision: &scheduler.Decision{
			Kind: scheduler.DecisionHalted, Halt: &scheduler.Halt{Reason: "too many offline", Remedy: scheduler.RemedyResume}}},
		{Time: now, Rollout: "app", RunID: "r1", Phase: scheduler.PhaseConfirm, Action: "decision:confirmed", Outcome: "ok", Detail: "every device confirmed"},
	}
}

func TestSetDeliversSubscribedEvents(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	log, buf := testLogger()
	set, err := New(context.Background(), []scheduler.NotifierSpec{
		webhook("ops", srv.URL, scheduler.NotifyApprovalNeeded, scheduler.NotifyRollback),
		{Type: scheduler.NotifierLog, Name: "audit", Level: "warn"},
	}, fastOpts(log))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events(time.Date(2026, 12, 1, 17, 0, 0, 0, time.UTC)) {
		set.Event(context.Background(), e, "2.0.0")
	}
	set.Close()

	if rec.count() != 2 {
		t.Fatalf("the webhook got %d notifications, want 2 (approval-needed, rollback): %+v", rec.count(), rec.notes)
	}
	a, r := rec.notes[0], rec.notes[1]
	if a.Kind != scheduler.NotifyApprovalNeeded || a.Notifier != "ops" || !strings.Contains(a.Message, "fleetplan approve app") {
		t.Errorf("approval notification %+v", a)
	}
	if r.Kind != scheduler.NotifyRollback || r.Version != "2.0.0" || r.Stage != "wave 1" || r.Numbers["failed"] != 2 ||
		r.Analysis == nil || r.Analysis.Kind != "compatibility" || r.Analysis.Classes[0] != "rpi" || !strings.Contains(r.Analysis.Summary, "node class rpi") {
		t.Errorf("rollback notification %+v (analysis %+v)", r, r.Analysis)
	}
	if ct := rec.heads[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	out := buf.String()
	// The log notifier got all four kinds at its level; every delivery is
	// recorded by a line.
	for _, want := range []string{"[WARN]  notify.audit: canary passed its gate", "kind=halted", "kind=done", "analysis=\"compatibility issue",
		"notification delivered: notifier=webhook.ops kind=rollback", "notification delivered: notifier=log.audit kind=done"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "notification delivered") != 6 {
		t.Errorf("want 6 delivery lines (2 webhook + 4 log):\n%s", out)
	}
	// Events after Close are ignored, without panicking on closed queues.
	set.Event(context.Background(), events(time.Now())[1], "2.0.0")
}

func TestKinds(t *testing.T) {
	want := []string{"", scheduler.NotifyApprovalNeeded, scheduler.NotifyRollback, scheduler.NotifyHalted, scheduler.NotifyDone}
	for i, e := range events(time.Now()) {
		if got := Kind(e); got != want[i] {
			t.Errorf("Kind(%s) = %q, want %q", e.Action, got, want[i])
		}
	}
	for _, a := range []string{"decision:gate-passed", "decision:approved", "decision:paused", "decision:resumed"} {
		if Kind(scheduler.Event{Action: a}) != scheduler.NotifyPhase {
			t.Errorf("%s is not a phase notification", a)
		}
	}
}

func TestWebhookRetries500ThenSucceeds(t *testing.T) {
	rec := &recorder{answer: func(n int, _ http.ResponseWriter) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	log, buf := testLogger()
	set, err := New(context.Background(), []scheduler.NotifierSpec{webhook("ops", srv.URL)}, fastOpts(log))
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if rec.count() != 3 {
		t.Fatalf("requests %d, want 3 (two 500s, then 200)", rec.count())
	}
	if !strings.Contains(buf.String(), "notification delivered: notifier=webhook.ops kind=done rollout=app attempts=3") {
		t.Errorf("log:\n%s", buf.String())
	}
}

func TestWebhookHonoursRetryAfter(t *testing.T) {
	rec := &recorder{answer: func(n int, w http.ResponseWriter) int {
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			return http.StatusTooManyRequests
		}
		return http.StatusOK
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	log, _ := testLogger()
	opts := fastOpts(log)
	opts.RetryWaitMax = 5 * time.Second // the cap of Retry-After; the first backoff is 1ms
	set, err := New(context.Background(), []scheduler.NotifierSpec{webhook("ops", srv.URL)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if rec.count() != 2 {
		t.Fatalf("requests %d, want 2", rec.count())
	}
	// The backoff alone would wait 1ms: the second request came
	// after the server's Retry-After (a lower bound, not a speed claim).
	if gap := rec.times[1].Sub(rec.times[0]); gap < time.Second {
		t.Errorf("retried after %v, before the Retry-After of 1s", gap)
	}
}

func TestBackoff(t *testing.T) {
	resp := func(code int, retryAfter string) *http.Response {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	min, max := 100*time.Millisecond, 10*time.Second
	for _, c := range []struct {
		resp    *http.Response
		attempt int
		want    time.Duration
	}{
		{resp(429, "7"), 0, 7 * time.Second},
		{resp(503, "3"), 2, 3 * time.Second},
		{resp(429, "3600"), 0, max},                // capped
		{resp(500, "7"), 0, min},                   // Retry-After only counts on 429/503
		{resp(500, ""), 3, 800 * time.Millisecond}, // exponential
		{nil, 10, max},
	} {
		if got := cappedBackoff(min, max, c.attempt, c.resp); got != c.want {
			code := 0
			if c.resp != nil {
				code = c.resp.StatusCode
			}
			t.Errorf("backoff(%d, attempt %d) = %v, want %v", code, c.attempt, got, c.want)
		}
	}
}

func TestWebhook4xxNotRetried(t *testing.T) {
	rec := &recorder{answer: func(int, http.ResponseWriter) int { return http.StatusNotFound }}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	log, buf := testLogger()
	set, err := New(context.Background(), []scheduler.NotifierSpec{webhook("ops", srv.URL+"/hooks/abc")}, fastOpts(log))
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if rec.count() != 1 {
		t.Fatalf("requests %d, want 1: a 404 is not retried", rec.count())
	}
	if out := buf.String(); !strings.Contains(out, "notification failed") || !strings.Contains(out, "404 Not Found (not retried") {
		t.Errorf("log:\n%s", out)
	}
}

// secretEnv holds the secrets of the redaction tests.
func secretEnv(name string) string {
	return map[string]string{"HOOK_PATH": "p4th-s3cr3t-0001", "OPS_HOOK_TOKEN": "t0ken-s3cr3t-0002"}[name]
}

// A secret value never appears in an error or a log line: the webhook's
// path and Authorization header come from the environment; the server
// echoes the header in its error answer; it fails every time; then a dead
// server.
func TestSecretsRedacted(t *testing.T) {
	rec := &recorder{answer: func(int, http.ResponseWriter) int { return http.StatusBadGateway }}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.ServeHTTP(&echoWriter{ResponseWriter: w, echo: r.Header.Get("Authorization") + " at " + r.URL.Path}, r)
	})
	srv := httptest.NewServer(echo)
	defer srv.Close()
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	spec := func(name, base string) scheduler.NotifierSpec {
		return scheduler.NotifierSpec{Type: scheduler.NotifierWebhook, Name: name,
			URL:     scheduler.SecretString{{Literal: base + "/hooks/"}, {Secret: &scheduler.SecretRef{Env: "HOOK_PATH"}}},
			Headers: map[string]scheduler.SecretString{"Authorization": {{Literal: "Bearer "}, {Secret: &scheduler.SecretRef{Env: "OPS_HOOK_TOKEN"}}}},
		}
	}
	log, buf := testLogger()
	opts := fastOpts(log)
	opts.Getenv = secretEnv
	opts.RetryMax = 2
	set, err := New(context.Background(), []scheduler.NotifierSpec{spec("ops", srv.URL), spec("gone", deadURL)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if rec.count() != 3 {
		t.Fatalf("requests %d, want 3 (RetryMax 2)", rec.count())
	}
	if got := rec.heads[0].Get("Authorization"); got != "Bearer t0ken-s3cr3t-0002" {
		t.Fatalf("the header was not resolved: %q", got)
	}
	out := buf.String()
	for _, want := range []string{"notifier=webhook.ops", "502 Bad Gateway", "giving up after 3 attempts", "notifier=webhook.gone", Redacted} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"p4th-s3cr3t-0001", "t0ken-s3cr3t-0002"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log shows the secret %s:\n%s", secret, out)
		}
	}

	// Build errors name the reference, never a value.
	_, err = New(context.Background(), []scheduler.NotifierSpec{{Type: scheduler.NotifierSlack, Name: "team",
		URL: scheduler.SecretString{{Secret: &scheduler.SecretRef{Env: "UNSET_VAR"}}}}}, Options{Getenv: secretEnv})
	if err == nil || !strings.Contains(err.Error(), "env.UNSET_VAR is not set") || !strings.Contains(err.Error(), `notifier "team"`) {
		t.Errorf("unset variable: %v", err)
	}
	_, err = New(context.Background(), []scheduler.NotifierSpec{{Type: scheduler.NotifierWebhook, Name: "bad",
		URL: scheduler.SecretString{{Secret: &scheduler.SecretRef{Env: "OPS_HOOK_TOKEN"}}}}}, Options{Getenv: secretEnv})
	if err == nil || strings.Contains(err.Error(), "t0ken") || !strings.Contains(err.Error(), "${env.OPS_HOOK_TOKEN} must be an http") {
		t.Errorf("a secret that is no URL: %v", err)
	}
}

type echoWriter struct {
	http.ResponseWriter
	echo string
}

func (w *echoWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	_, _ = w.ResponseWriter.Write([]byte("rejected " + w.echo))
}

// fakeVars is a Nomad Variables reader.
type fakeVars struct {
	vars  map[string]map[string]string
	reads int
}

func (f *fakeVars) Read(path string, q *nomadapi.QueryOptions) (*nomadapi.Variable, *nomadapi.QueryMeta, error) {
	f.reads++
	if q == nil || q.Context() == nil {
		return nil, nil, errors.New("no context")
	}
	items, ok := f.vars[path]
	if !ok {
		return nil, nil, nomadapi.ErrVariablePathNotFound
	}
	return &nomadapi.Variable{Path: path, Items: items}, &nomadapi.QueryMeta{}, nil
}

func TestNomadVariableReferences(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	vars := &fakeVars{vars: map[string]map[string]string{"fleetplan/notify": {"slack_url": srv.URL + "/services/T0/B0/v4r-s3cr3t", "other": "x"}}}
	ref := func(path, item string) scheduler.SecretString {
		return scheduler.SecretString{{Secret: &scheduler.SecretRef{NomadVariable: path, Item: item}}}
	}
	log, buf := testLogger()
	opts := fastOpts(log)
	opts.Variables = vars
	set, err := New(context.Background(), []scheduler.NotifierSpec{
		{Type: scheduler.NotifierSlack, Name: "team", URL: ref("fleetplan/notify", "slack_url")},
		{Type: scheduler.NotifierSlack, Name: "team2", URL: ref("fleetplan/notify", "slack_url")},
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[1], "2.0.0")
	set.Close()
	if rec.count() != 2 || vars.reads != 1 {
		t.Fatalf("requests %d (want 2), variable reads %d (want 1)", rec.count(), vars.reads)
	}
	if strings.Contains(buf.String(), "v4r-s3cr3t") {
		t.Errorf("the log shows the URL's secret path:\n%s", buf.String())
	}
	for _, c := range []struct {
		spec scheduler.SecretString
		opts Options
		want string
	}{
		{ref("fleetplan/notify", "missing"), Options{Variables: vars}, `has no item "missing" (its items: other, slack_url)`},
		{ref("fleetplan/none", "x"), Options{Variables: vars}, "does not exist"},
		{ref("fleetplan/notify", "slack_url"), Options{}, "no Nomad client"},
	} {
		_, err := New(context.Background(), []scheduler.NotifierSpec{{Type: scheduler.NotifierSlack, Name: "t", URL: c.spec}}, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "v4r-s3cr3t") {
			t.Errorf("%s: %v, want %q", c.spec, err, c.want)
		}
	}
}

// A slow webhook never blocks Event: its queue is bounded and overflow is
// dropped with a warning; the other notifiers still deliver.
func TestSlowWebhookNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	var got atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	log, buf := testLogger()
	opts := fastOpts(log)
	opts.QueueSize = 2
	set, err := New(context.Background(), []scheduler.NotifierSpec{webhook("slow", srv.URL), {Type: scheduler.NotifierLog, Name: "audit"}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 20; i++ {
			set.Event(context.Background(), events(time.Now())[4], "2.0.0")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Event blocked behind a slow webhook")
	}
	// The log notifier delivers while the webhook is still stuck.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "notification delivered: notifier=log.audit") {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("the log notifier was held up by the webhook:\n%s", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	set.Close()
	out := buf.String()
	if !strings.Contains(out, "notification queue full; dropped a notification: notifier=webhook.slow") {
		t.Errorf("no drop warning:\n%s", out)
	}
	if n := got.Load(); n < 1 || n > 3 {
		t.Errorf("the slow webhook got %d requests; want 1 to 3 (one in flight, two queued)", n)
	}
}

func TestSlackPayloadGolden(t *testing.T) {
	e := events(time.Date(2026, 12, 1, 17, 30, 0, 0, time.UTC))[2]
	e.Actor = "alice@laptop"
	n := NewNotification(e, Kind(e), "2.4.1")
	n.Notifier = "team"
	got, err := json.MarshalIndent(SlackMessage(n), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const path = "testdata/slack-rollback.golden.json"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./notify/ -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Slack payload differs from %s:\n%s", path, got)
	}
	if !strings.Contains(string(got), `"text": ":rewind: Rollback: app 2.4.1`) || !strings.Contains(string(got), "node class rpi") {
		t.Errorf("payload lacks its text or analysis")
	}
}

func TestParseFlags(t *testing.T) {
	specs, err := ParseFlags([]string{"log", "webhook:url=https://h.example.com/x,timeout=5s,events=rollback+done", "slack:url=env.SLACK_URL,name=team", "log:level=debug"})
	if err != nil {
		t.Fatal(err)
	}
	if len(specs) != 4 || specs[0].Name != "flag1" || specs[0].Source != "flag" ||
		specs[1].URL.String() != "https://h.example.com/x" || specs[1].Timeout != 5*time.Second || strings.Join(specs[1].Events, ",") != "rollback,done" ||
		specs[2].Name != "team" || specs[2].URL.String() != "${env.SLACK_URL}" || specs[3].Level != "debug" {
		t.Fatalf("specs %+v", specs)
	}
	for flag, want := range map[string]string{
		"pager":                             `unknown notifier type "pager"`,
		"webhook":                           "no url",
		"webhook:url":                       "is not key=value",
		"webhook:url=https://x,level=debug": `takes no "level"`,
		"log:events=rollbak":                `unknown event "rollbak"`,
		"slack:url=https://x,timeout=soon":  "not a positive duration",
	} {
		if _, err := ParseFlags([]string{flag}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", flag, err, want)
		}
	}
	// A flag notifier and a policy one with the same name are refused.
	if _, err := New(context.Background(), []scheduler.NotifierSpec{{Type: "log", Name: "a"}, {Type: "log", Name: "a"}}, Options{}); err == nil {
		t.Error("two notifiers named a were accepted")
	}
}

// A delivery is bounded by its timeout, retries included; Close is bounded
// by CloseTimeout and then stops what is in flight.
func TestDeliveryAndCloseTimeouts(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select { // does not answer
		case <-r.Context().Done():
		case <-stop:
		}
	}))
	defer srv.Close()
	defer close(stop)
	log, buf := testLogger()
	spec := webhook("hang", srv.URL)
	spec.Timeout = 50 * time.Millisecond
	set, err := New(context.Background(), []scheduler.NotifierSpec{spec}, fastOpts(log))
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if out := buf.String(); !strings.Contains(out, "notification failed: notifier=webhook.hang") || !strings.Contains(out, "context deadline exceeded") {
		t.Errorf("the hanging delivery did not time out:\n%s", out)
	}

	log, buf = testLogger()
	opts := fastOpts(log)
	opts.CloseTimeout = 50 * time.Millisecond
	set, err = New(context.Background(), []scheduler.NotifierSpec{webhook("hang", srv.URL)}, opts) // default timeout: 30s
	if err != nil {
		t.Fatal(err)
	}
	set.Event(context.Background(), events(time.Now())[4], "2.0.0")
	set.Close()
	if out := buf.String(); !strings.Contains(out, "notifications still queued at close were dropped") || !strings.Contains(out, "notification failed") {
		t.Errorf("Close did not stop the delivery in flight:\n%s", out)
	}
}

func TestRedactor(t *testing.T) {
	r := &redactor{}
	if got := r.text("nothing to hide"); got != "nothing to hide" {
		t.Errorf("an empty redactor changed the text: %q", got)
	}
	r.add("s3cr3t")
	r.add("a b/c?d")
	r.add("")
	for in, want := range map[string]string{
		"token s3cr3t.":                  "token [redacted].",
		`Post "https://h/a%20b%2Fc%3Fd"`: `Post "https://h/[redacted]"`,
		"q=a+b%2Fc%3Fd":                  "q=[redacted]",
		"raw a b/c?d here":               "raw [redacted] here",
	} {
		if got := r.text(in); got != want {
			t.Errorf("text(%q) = %q, want %q", in, got, want)
		}
	}
	if err := r.err(errors.New("dial s3cr3t: refused")); err.Error() != "dial [redacted]: refused" {
		t.Errorf("err: %v", err)
	}
	if r.err(nil) != nil {
		t.Error("err(nil) is not nil")
	}
}
