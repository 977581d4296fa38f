package scheduler

import (
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Strategy names how a rollout moves the fleet between the two slots.
type Strategy string

const (
	StrategyCanaryRolling Strategy = "canary-rolling"
	StrategyBlueGreen     Strategy = "blue-green"
	StrategyRollingUpdate Strategy = "rolling-update"
	StrategyAB            Strategy = "a-b"
)

// Strategies lists the accepted strategies, the default first.
var Strategies = []Strategy{StrategyCanaryRolling, StrategyBlueGreen, StrategyRollingUpdate, StrategyAB}

// Approval says who lets a rollout leave the canary.
type Approval string

const (
	ApprovalManual Approval = "manual"
	ApprovalAuto   Approval = "auto"
)

// RollbackScope says what an automatic rollback takes back.
type RollbackScope string

const (
	ScopeWave  RollbackScope = "wave"
	ScopeFleet RollbackScope = "fleet"
)

// Defaults applied by the policy decoder when an attribute is absent.
const (
	DefaultMaxParallel = 10
	DefaultMinPerClass = 1
	DefaultGrace       = 30 * time.Second
	DefaultMaxRestarts = 3
)

// Policy is one `rollout` block: everything fleetplan needs to move one
// application across a fleet. Ranges point at the policy source so that
// problems found after decoding (by the planner, against the cluster) can
// still be reported at the right line.
type Policy struct {
	// Name is the rollout label: the application name, which names the slot
	// jobs <Name>-blue and <Name>-green.
	Name string

	Fleet       Fleet
	Release     Release
	Strategy    Strategy
	MaxParallel int
	Canary      Canary
	Waves       []Wave
	Health      Health
	Rollback    Rollback
	Offline     Offline
	// AB is the a-b comparison (the `ab` block); nil when the policy has
	// none (an a-b rollout then reports its comparison only).
	AB *AB
	// Notify are the policy's notify blocks, in source order.
	Notify []NotifierSpec

	// File is the policy file the rollout was read from.
	File     string
	DefRange hcl.Range
	// StrategyRange and MaxParallelRange point at the attributes when they
	// are written, and at DefRange when the default applies.
	StrategyRange    hcl.Range
	MaxParallelRange hcl.Range
}

// Fleet selects the devices a rollout covers.
type Fleet struct {
	// Selector is a Nomad node filter expression (e.g. `Meta.fleet == "vision"`).
	Selector    string
	Datacenters []string
	Range       hcl.Range
	// SelectorRange is the range of the selector expression.
	SelectorRange hcl.Range
}

// Release is the version being rolled out.
type Release struct {
	// Jobspec is the absolute path of the application's Nomad jobspec.
	Jobspec string
	Version string
	// Env is added to every task.
	Env map[string]string
	// Variants overrides per node class, keyed by class.
	Variants map[string]Variant
	Range    hcl.Range
	// JobspecRange and VersionRange are the ranges of the two expressions.
	JobspecRange hcl.Range
	VersionRange hcl.Range
}

// Variant is the per-node-class override of a release.
type Variant struct {
	Class string
	Env   map[string]string
	Range hcl.Range
}

// Canary is the first stage of every rollout.
type Canary struct {
	// Percent of the fleet, 1..5.
	Percent     float64
	MinPerClass int
	Soak        time.Duration
	Approval    Approval
	Range       hcl.Range
	// PercentRange and SoakRange are the ranges of the two expressions.
	PercentRange hcl.Range
	SoakRange    hcl.Range
}

// Wave is one stage after the canary. Percent is the cumulative share of the
// fleet that runs the candidate once the wave is through.
type Wave struct {
	Percent float64
	Soak    time.Duration
	Range   hcl.Range
	// PercentRange and SoakRange are the ranges of the two expressions.
	PercentRange hcl.Range
	SoakRange    hcl.Range
}

// Health configures the four health layers.
type Health struct {
	Grace        time.Duration
	Connectivity Connectivity
	System       *SystemHealth
	Application  Application
	Functional   *Functional
	Range        hcl.Range
}

// Connectivity is health layer 1.
type Connectivity struct {
	HeartbeatTimeout time.Duration
}

// SystemHealth is health layer 2; zero thresholds are not checked.
type SystemHealth struct {
	MaxCPUPercent    float64
	MaxMemoryPercent float64
	MaxDiskPercent   float64
	MaxTemperatureC  float64
	Range            hcl.Range
}

// Application is health layer 3: the application's health endpoint.
type Application struct {
	// Port is the task group's network port label the endpoint listens on.
	Port          string
	Path          string
	Interval      time.Duration
	Timeout       time.Duration
	ExpectVersion bool
	MaxRestarts   int
	// Metrics is the application's metrics block (nil: fleetplan's JSON
	// record at /metrics).
	Metrics *AppMetrics
	Range   hcl.Range
}

// AppMetrics says where the device agent reads an application's metrics
// and, for the Prometheus text format, which series give the request and
// error counts and the latency histogram.
type AppMetrics struct {
	Path string
	// Format is "json" (fleetplan's JSON record, the default) or
	// "prometheus".
	Format string
	// Requests, Errors and Latency are series selectors, `name` or
	// `name{label="value",code=~"5.."}` (prometheus only).
	Requests string
	Errors   string
	Latency  string
	Range    hcl.Range
}

// Functional is health layer 4: a probe plugin sends a test input.
type Functional struct {
	Probe string
	Path  string
	// Input is the test input sent to the application; when the policy
	// names an input_file, Input holds that file's content and InputFile
	// its absolute path.
	Input      string
	InputFile  string
	Expect     map[string]string
	MaxLatency time.Duration
	Interval   time.Duration
	Range      hcl.Range
	// Command (probe "exec" only) names an entry of the device agent's own
	// local allow-list, which maps it to the program to run; it is a name
	// (plugin.ValidExecCommandName), never a command line. Args are
	// optional arguments given to it.
	Command string
	Args    []string
}

// Rollback holds the automatic rollback triggers.
type Rollback struct {
	// MaxFailurePercent of the devices a wave attempted, 0..100.
	MaxFailurePercent            float64
	MaxErrorRate                 float64
	MaxP95LatencyIncreasePercent float64
	// MaxOfflineAfterSwitchPercent of the devices a wave switched to the
	// candidate that may drop offline afterwards, 0..100 (invariant I6:
	// offline after a switch counts; offline before one is skipped). The
	// policy decoder sets it to MaxFailurePercent when the policy does not.
	MaxOfflineAfterSwitchPercent float64
	Scope                        RollbackScope
	Range                        hcl.Range
}

// Offline says what happens to devices that cannot be reached.
type Offline struct {
	CatchUp           bool
	MaxOfflinePercent float64
	Range             hcl.Range
}

// Stages returns the canary followed by the waves as cumulative percentages,
// the form the planner and the state machine work on.
//
// An a-b rollout's canary and waves make up group B; its last stage soaks
// for at least ab.duration (the comparison's hold), and one more stage,
// ABGroupAStage, holds the rest of the fleet (group A): it runs only when
// the comparison promotes B (see ab.go).
func (p *Policy) Stages() []StageSpec {
	out := make([]StageSpec, 0, len(p.Waves)+2)
	out = append(out, StageSpec{Name: "canary", Percent: p.Canary.Percent, Soak: p.Canary.Soak, Canary: true})
	for i, w := range p.Waves {
		out = append(out, StageSpec{Name: waveName(i + 1), Percent: w.Percent, Soak: w.Soak})
	}
	if p.Strategy == StrategyAB {
		last := &out[len(out)-1]
		if p.AB != nil && p.AB.Duration > last.Soak {
			last.Soak = p.AB.Duration
		}
		if last.Percent < 100 {
			out = append(out, StageSpec{Name: ABGroupAStage, Percent: 100, Soak: last.Soak})
		}
	}
	return out
}

// PromoteIf says when an a-b comparison promotes B to the whole fleet.
type PromoteIf string

const (
	// PromoteNever reports the comparison and keeps both groups (default).
	PromoteNever PromoteIf = "never"
	// PromoteNotWorse promotes B unless it is worse beyond the tolerance;
	// B worse rolls B back.
	PromoteNotWorse PromoteIf = "not-worse"
	// PromoteBetter promotes B only when it is measurably better; B worse
	// rolls B back, anything else keeps both groups.
	PromoteBetter PromoteIf = "better"
)

// PromoteIfs lists the accepted promote_if values, the default first.
var PromoteIfs = []PromoteIf{PromoteNever, PromoteNotWorse, PromoteBetter}

// Defaults of the ab block.
const (
	DefaultABConfidence  = 0.95
	DefaultABMinRequests = 30
	DefaultABMinSamples  = 8
)

// AB is an a-b rollout's comparison of group A (the active version) with
// group B (the candidate), per device class and overall.
type AB struct {
	// Duration is how long group B runs (complete) before the comparison.
	Duration time.Duration
	// PromoteIf: never (report only), not-worse or better.
	PromoteIf PromoteIf
	// Confidence of the tests, in (0.5, 1): a difference counts when its
	// two-sided p-value is below 1 - Confidence.
	Confidence float64
	// Tolerance is how much worse B may be and still count as not worse.
	Tolerance ABTolerance
	// MinRequests per group (and class) for the error-rate and probe
	// tests; MinSamples latency samples per group for the latency test.
	// Below them the comparison says "not enough data".
	MinRequests float64
	MinSamples  int
	Range       hcl.Range
}

// ABTolerance is how much worse B may be than A before it is "worse".
type ABTolerance struct {
	// ErrorRate and ProbeFailureRate are absolute (0.01: one point).
	ErrorRate        float64
	ProbeFailureRate float64
	// P95LatencyPercent is B's p95 latency over A's, in percent.
	P95LatencyPercent float64
	Range             hcl.Range
}

// StageSpec is one stage of a rollout as written in the policy.
type StageSpec struct {
	Name    string
	Percent float64
	Soak    time.Duration
	Canary  bool
}

func waveName(n int) string {
	return "wave " + strconv.Itoa(n)
}

// Notification events: what a notify block may subscribe to.
const (
	NotifyApprovalNeeded = "approval-needed"
	NotifyPhase          = "phase"
	NotifyRollback       = "rollback"
	NotifyHalted         = "halted"
	NotifyDone           = "done"
)

// NotifyEvents lists the notification events, in the order they usually
// happen. A notify block without events subscribes to all of them.
var NotifyEvents = []string{NotifyApprovalNeeded, NotifyPhase, NotifyRollback, NotifyHalted, NotifyDone}

// Notifier types.
const (
	NotifierWebhook = "webhook"
	NotifierLog     = "log"
	NotifierSlack   = "slack"
)

// NotifierTypes lists the notifier types a notify block may name.
var NotifierTypes = []string{NotifierLog, NotifierSlack, NotifierWebhook}

// NotifierSpec is one `notify` block (or -notify flag): who is told about a
// rollout's events. It is plain data that holds references to secrets,
// never their values, so it may be stored (in the rollout request) and
// printed; the notify package resolves the references when it builds the
// notifier, in the controller that runs the rollout.
type NotifierSpec struct {
	// Type is webhook, log or slack; Name is the block's second label.
	Type string `json:"type"`
	Name string `json:"name"`
	// Events the notifier is told about; empty means all (NotifyEvents).
	Events []string `json:"events,omitempty"`
	// URL is where webhook and slack notifiers POST.
	URL SecretString `json:"url,omitempty"`
	// Headers are extra request headers of a webhook notifier.
	Headers map[string]SecretString `json:"headers,omitempty"`
	// Level is the log notifier's level (default info).
	Level string `json:"level,omitempty"`
	// Timeout bounds one delivery, retries included (0: the default).
	Timeout time.Duration `json:"timeout,omitempty"`
	// Source says where the spec comes from: "policy" or "flag".
	Source string    `json:"source,omitempty"`
	Range  hcl.Range `json:"-"`
}

// Wants reports whether the notifier is told about event.
func (s NotifierSpec) Wants(event string) bool {
	if len(s.Events) == 0 {
		return true
	}
	for _, e := range s.Events {
		if e == event {
			return true
		}
	}
	return false
}

// SecretString is a string made of literal text and references to secrets,
// such as "Bearer ${env.OPS_HOOK_TOKEN}". Only the references are kept:
// the secrets' values are read when the notifier is built.
type SecretString []StringPart

// StringPart is literal text or a reference to a secret.
type StringPart struct {
	Literal string     `json:"literal,omitempty"`
	Secret  *SecretRef `json:"secret,omitempty"`
}

// SecretRef names a secret: an environment variable of the controller that
// runs the rollout, or an item of a Nomad Variable.
type SecretRef struct {
	Env           string `json:"env,omitempty"`
	NomadVariable string `json:"nomad_variable,omitempty"`
	Item          string `json:"item,omitempty"`
}

// Literal returns a SecretString without references.
func Literal(s string) SecretString {
	if s == "" {
		return nil
	}
	return SecretString{{Literal: s}}
}

// String writes the reference as the policy does: env.NAME or
// nomad_var("path", "item").
func (r SecretRef) String() string {
	if r.Env != "" {
		return "env." + r.Env
	}
	return "nomad_var(" + strconv.Quote(r.NomadVariable) + ", " + strconv.Quote(r.Item) + ")"
}

// String writes the string with its references as ${...}: safe to print,
// since it holds no secret value.
func (s SecretString) String() string {
	var b []byte
	for _, p := range s {
		if p.Secret != nil {
			b = append(b, "${"+p.Secret.String()+"}"...)
		} else {
			b = append(b, p.Literal...)
		}
	}
	return string(b)
}

// HasSecret reports whether the string references a secret.
func (s SecretString) HasSecret() bool {
	for _, p := range s {
		if p.Secret != nil {
			return true
		}
	}
	return false
}

// LiteralPrefix returns the literal text before the first reference.
func (s SecretString) LiteralPrefix() string {
	var b []byte
	for _, p := range s {
		if p.Secret != nil {
			break
		}
		b = append(b, p.Literal...)
	}
	return string(b)
}
