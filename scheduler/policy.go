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
	Range         hcl.Range
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
func (p *Policy) Stages() []StageSpec {
	out := make([]StageSpec, 0, len(p.Waves)+1)
	out = append(out, StageSpec{Name: "canary", Percent: p.Canary.Percent, Soak: p.Canary.Soak, Canary: true})
	for i, w := range p.Waves {
		out = append(out, StageSpec{Name: waveName(i + 1), Percent: w.Percent, Soak: w.Soak})
	}
	return out
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
