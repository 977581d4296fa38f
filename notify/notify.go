package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Defaults of Options.
const (
	DefaultQueueSize    = 64
	DefaultTimeout      = 30 * time.Second
	DefaultRetryMax     = 4
	DefaultRetryWaitMin = 500 * time.Millisecond
	DefaultRetryWaitMax = 30 * time.Second
	DefaultCloseTimeout = time.Minute
)

// VariableReader reads Nomad Variables; *nomadapi.Variables (client.Variables())
// is one.
type VariableReader interface {
	Read(path string, q *nomadapi.QueryOptions) (*nomadapi.Variable, *nomadapi.QueryMeta, error)
}

// Options configures New. Only Logger is needed in practice; the rest have
// defaults.
type Options struct {
	Logger hclog.Logger
	// Variables resolves nomad_var references; nil makes them an error.
	Variables VariableReader
	// Getenv resolves env references (default os.Getenv).
	Getenv func(string) string
	// QueueSize bounds each notifier's queue (default DefaultQueueSize).
	QueueSize int
	// Timeout bounds one delivery, retries included, when the spec does
	// not (default DefaultTimeout).
	Timeout time.Duration
	// RetryMax, RetryWaitMin and RetryWaitMax bound a webhook's retries.
	RetryMax     int
	RetryWaitMin time.Duration
	RetryWaitMax time.Duration
	// CloseTimeout bounds how long Close waits for queued notifications.
	CloseTimeout time.Duration
	// HTTPClient sends webhook requests (default: a pooled client
	// honouring the proxy environment).
	HTTPClient *http.Client
}

func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RetryMax < 0 {
		o.RetryMax = 0
	} else if o.RetryMax == 0 {
		o.RetryMax = DefaultRetryMax
	}
	if o.RetryWaitMin <= 0 {
		o.RetryWaitMin = DefaultRetryWaitMin
	}
	if o.RetryWaitMax <= 0 {
		o.RetryWaitMax = DefaultRetryWaitMax
	}
	if o.CloseTimeout <= 0 {
		o.CloseTimeout = DefaultCloseTimeout
	}
}

// Notification is what a notifier is told; webhooks receive it as JSON
// (see the package documentation).
type Notification struct {
	Kind     string             `json:"kind"`
	Notifier string             `json:"notifier"`
	Time     time.Time          `json:"time"`
	Rollout  string             `json:"rollout"`
	RunID    string             `json:"run_id"`
	Version  string             `json:"version"`
	Phase    string             `json:"phase"`
	Stage    string             `json:"stage,omitempty"`
	Action   string             `json:"action"`
	Actor    string             `json:"actor,omitempty"`
	Message  string             `json:"message"`
	Numbers  map[string]float64 `json:"numbers,omitempty"`
	Analysis *Analysis          `json:"analysis,omitempty"`
}

// Analysis explains a rollback after a failed gate: Kind is artifact,
// compatibility, infrastructure or inconclusive.
type Analysis struct {
	Kind     string   `json:"kind"`
	Summary  string   `json:"summary"`
	Classes  []string `json:"classes,omitempty"`
	Layer    int      `json:"layer,omitempty"`
	Examples []string `json:"examples,omitempty"`
}

// Kind returns the notification event of a controller event, "" for the
// events people are not told about (device actions, intents, soaks).
func Kind(e scheduler.Event) string {
	switch {
	case e.Action == "await-approval" && e.Outcome == "waiting":
		return scheduler.NotifyApprovalNeeded
	case e.Action == "decision:halted":
		return scheduler.NotifyHalted
	case e.Action == "decision:rollback", e.Action == "decision:rolled-back", e.Action == "decision:rollback-incomplete":
		return scheduler.NotifyRollback
	case e.Action == "decision:confirmed":
		return scheduler.NotifyDone
	case e.Action == "decision:gate-passed", e.Action == "decision:approved", e.Action == "decision:validated",
		e.Action == "decision:paused", e.Action == "decision:resumed":
		return scheduler.NotifyPhase
	}
	return ""
}

// hint says what an operator does next, when anything.
func hint(e scheduler.Event) string {
	switch {
	case e.Action == "await-approval" && e.Outcome == "waiting":
		return fmt.Sprintf("approve with `fleetplan approve %s`", e.Rollout)
	case e.Decision != nil && e.Decision.Kind == scheduler.DecisionPaused:
		return fmt.Sprintf("resume with `fleetplan resume %s`", e.Rollout)
	case e.Decision != nil && e.Decision.Halt != nil:
		return report.RemedyText(e.Rollout, e.Decision.Halt)
	}
	return ""
}

// NewNotification builds the notification of a controller event (kind
// from Kind), without the notifier's name.
func NewNotification(e scheduler.Event, kind, version string) Notification {
	msg := e.Detail
	if msg == "" {
		msg = e.Action
	}
	if h := hint(e); h != "" {
		msg += "; " + h
	}
	n := Notification{Kind: kind, Time: e.Time, Rollout: e.Rollout, RunID: e.RunID, Version: version,
		Phase: string(e.Phase), Stage: e.Stage, Action: e.Action, Actor: e.Actor, Message: msg}
	if d := e.Decision; d != nil {
		n.Numbers = d.Numbers
		if a := d.Analysis; a != nil {
			n.Analysis = &Analysis{Kind: string(a.Kind), Summary: a.String(), Classes: a.Classes, Layer: a.Layer, Examples: a.Examples}
		}
	}
	return n
}

// sender delivers one notification; attempts is how many requests it took
// (1 for the log notifier).
type sender interface {
	send(ctx context.Context, n Notification) (attempts int, err error)
}

// notifier is one built notify block: its queue and its goroutine.
type notifier struct {
	spec    scheduler.NotifierSpec
	id      string // type.name, for logs
	timeout time.Duration
	send    sender
	queue   chan Notification
	done    chan struct{}
}

// Set is the notifiers of one rollout. Its methods are safe for concurrent
// use; Event never blocks.
type Set struct {
	log    hclog.Logger
	redact *redactor
	list   []*notifier
	// ctx is cancelled by Close once the queues had their time, to stop
	// deliveries still in flight.
	ctx    context.Context
	cancel context.CancelFunc
	close  time.Duration

	mu     sync.RWMutex
	closed bool
}

// New builds the notifiers of specs: it resolves their secret references
// (environment variables through opts.Getenv, Nomad Variables through
// opts.Variables, read with ctx) and starts one delivery goroutine per
// notifier. Errors name the notifier and the reference, never a value.
// Call Close when the rollout is over.
func New(ctx context.Context, specs []scheduler.NotifierSpec, opts Options) (*Set, error) {
	opts.defaults()
	log := opts.Logger.Named("notify")
	red := &redactor{}
	res := &resolver{ctx: ctx, opts: &opts, red: red, vars: map[string]map[string]string{}}
	s := &Set{log: log, redact: red, close: opts.CloseTimeout}
	names := map[string]bool{}
	var list []*notifier
	for _, spec := range specs {
		id := spec.Type + "." + spec.Name
		if names[spec.Name] {
			return nil, fmt.Errorf("notifier %q: two notifiers have this name; rename one (policy notify blocks and -notify flags share one namespace)", spec.Name)
		}
		names[spec.Name] = true
		n := &notifier{spec: spec, id: id, timeout: spec.Timeout}
		if n.timeout <= 0 {
			n.timeout = opts.Timeout
		}
		var err error
		switch spec.Type {
		case scheduler.NotifierLog:
			n.send, err = newLogSender(spec, log.Named(spec.Name))
		case scheduler.NotifierWebhook, scheduler.NotifierSlack:
			n.send, err = newHTTPSender(spec, res, &opts, red, log.Named(spec.Name))
		default:
			err = fmt.Errorf("unknown notifier type %q; the types are log, slack and webhook", spec.Type)
		}
		if err != nil {
			return nil, red.err(fmt.Errorf("building the %s notifier %q%s: %w", spec.Type, spec.Name, where(spec), err))
		}
		list = append(list, n)
	}
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for _, n := range list {
		n.queue = make(chan Notification, opts.QueueSize)
		n.done = make(chan struct{})
		go s.run(n)
	}
	s.list = list
	return s, nil
}

// where names the policy line of a spec, when it has one.
func where(spec scheduler.NotifierSpec) string {
	if spec.Range.Filename == "" {
		if spec.Source == "flag" {
			return " (-notify flag)"
		}
		return ""
	}
	return fmt.Sprintf(" (%s:%d)", spec.Range.Filename, spec.Range.Start.Line)
}

// Len is the number of notifiers.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// Event queues the notification of a controller event for every notifier
// subscribed to its kind. It never blocks: a notifier whose queue is full
// loses the notification, with a warning. version is the release version.
func (s *Set) Event(_ context.Context, e scheduler.Event, version string) {
	if s == nil || len(s.list) == 0 {
		return
	}
	kind := Kind(e)
	if kind == "" {
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	base := NewNotification(e, kind, version)
	for _, n := range s.list {
		if !n.spec.Wants(kind) {
			continue
		}
		note := base
		note.Notifier = n.spec.Name
		select {
		case n.queue <- note:
		default:
			s.log.Warn("notification queue full; dropped a notification", "notifier", n.id, "kind", kind, "rollout", e.Rollout, "queue", cap(n.queue))
		}
	}
}

func (s *Set) run(n *notifier) {
	defer close(n.done)
	for note := range n.queue {
		ctx, cancel := context.WithTimeout(s.ctx, n.timeout)
		start := time.Now()
		attempts, err := n.send.send(ctx, note)
		cancel()
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			s.log.Warn("notification failed", "notifier", n.id, "kind", note.Kind, "rollout", note.Rollout,
				"attempts", attempts, "duration", took, "error", s.redact.err(err))
			continue
		}
		s.log.Info("notification delivered", "notifier", n.id, "kind", note.Kind, "rollout", note.Rollout,
			"attempts", attempts, "duration", took)
	}
}

// Close delivers what is queued, waiting at most Options.CloseTimeout, then
// stops the deliveries still in flight. Events after Close are ignored.
func (s *Set) Close() {
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, n := range s.list {
		close(n.queue)
	}
	s.mu.Unlock()
	defer s.cancel()
	t := time.NewTimer(s.close)
	defer t.Stop()
	for _, n := range s.list {
		select {
		case <-n.done:
		case <-t.C:
			s.log.Warn("notifications still queued at close were dropped", "notifier", n.id, "waited", s.close)
			s.cancel()
			<-n.done // the cancelled delivery returns at once
		}
	}
}

// errNoVariables is returned for a nomad_var reference when New was given
// no Nomad Variables reader.
var errNoVariables = errors.New("no Nomad client to read Nomad Variables with")
