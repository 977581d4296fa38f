package scheduler

import (
	"context"
	"errors"
	"time"
)

// Phase is where a rollout is in its lifecycle.
//
//	PREPARE -> VALIDATE -> CANARY -> AWAITING_APPROVAL -> WAVE 1..n -> CONFIRM -> DONE
//	   any phase --rollback--> ROLLING_BACK -> PREPARE (outcome: rolled-back)
//
// CANARY and WAVE each run one stage:
//
//	switching (<= max_parallel device switches in flight)
//	    -> soaking (health sampled throughout, fail fast on a breach)
//	    -> gate (thresholds evaluated) -> pass (next phase) | rollback
type Phase string

const (
	PhasePrepare          Phase = "PREPARE"
	PhaseValidate         Phase = "VALIDATE"
	PhaseCanary           Phase = "CANARY"
	PhaseAwaitingApproval Phase = "AWAITING_APPROVAL"
	PhaseWave             Phase = "WAVE"
	PhaseConfirm          Phase = "CONFIRM"
	PhaseDone             Phase = "DONE"
	PhaseRollingBack      Phase = "ROLLING_BACK"
)

// Step is where a stage (the canary or a wave) is.
type Step string

const (
	StepSwitching Step = "switching"
	StepSoaking   Step = "soaking"
	StepGate      Step = "gate"
)

// DeviceState is one device's state within a rollout.
type DeviceState string

const (
	DevicePending        DeviceState = "pending"
	DeviceSwitching      DeviceState = "switching"
	DeviceVerifying      DeviceState = "verifying"
	DeviceHealthy        DeviceState = "healthy"
	DeviceFailed         DeviceState = "failed"
	DeviceRollingBack    DeviceState = "rolling-back"
	DeviceRolledBack     DeviceState = "rolled-back"
	DeviceQuarantined    DeviceState = "quarantined"
	DeviceSkippedOffline DeviceState = "skipped-offline"
	DeviceCaughtUp       DeviceState = "caught-up"
)

// OnCandidate reports whether a device in this state runs (or may run) the
// candidate slot, so that a rollback must take it back.
func (s DeviceState) OnCandidate() bool {
	switch s {
	case DeviceSwitching, DeviceVerifying, DeviceHealthy, DeviceFailed, DeviceRollingBack, DeviceCaughtUp:
		return true
	}
	return false
}

// Outcome is how a finished rollout ended.
type Outcome string

const (
	OutcomeNone       Outcome = ""
	OutcomeSucceeded  Outcome = "succeeded"
	OutcomeRolledBack Outcome = "rolled-back"
	// OutcomeRollbackIncomplete: the rollback ran but some devices could
	// not be verified back on the old version (they are named in the
	// decision); never reported as rolled-back.
	OutcomeRollbackIncomplete Outcome = "rollback-incomplete"
)

// Slot colours.
const (
	SlotBlue  = "blue"
	SlotGreen = "green"
)

// OtherSlot returns the other colour; the first rollout ("" active) installs
// into blue.
func OtherSlot(active string) string {
	if active == SlotBlue {
		return SlotGreen
	}
	return SlotBlue
}

// DeviceRef names a device for the cluster operations.
type DeviceRef struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Class string `json:"class"`
}

// DeviceRecord is one device's part of a rollout, persisted under
// fleetplan/rollouts/<rollout>/devices/<id>.
type DeviceRecord struct {
	DeviceRef
	// Stage is the index of the stage (0 = canary) the device belongs to.
	Stage  int         `json:"stage"`
	State  DeviceState `json:"state"`
	Reason string      `json:"reason,omitempty"`
	// Layer is the health layer (1..4) that failed the device, 0 otherwise.
	Layer int `json:"layer,omitempty"`
	// Attempted is set once a switch may have changed the device's slot and
	// cleared when the device is known to be back on the active slot, so a
	// rollback knows which offline devices it must still take back.
	Attempted bool `json:"attempted,omitempty"`
	// Failed is set when the device failed in this run (its verdict or its
	// switch) and kept through its rollback or quarantine, so that counts
	// never read a failure from the reason text.
	Failed bool `json:"failed,omitempty"`
	// CatchUp marks a device that was offline when its stage ran and is
	// being switched (or rolled back) now that it is back.
	CatchUp bool `json:"catch_up,omitempty"`
	// StandbyHeld marks a blue-green device whose old slot still runs
	// beside the confirmed candidate because it was offline when the
	// standby was released; catch-up releases it when it returns.
	StandbyHeld bool      `json:"standby_held,omitempty"`
	SwitchedAt  time.Time `json:"switched_at,omitempty"`
	HealthyAt   time.Time `json:"healthy_at,omitempty"`
	// SuspectSince is when a failure that needs confirmation was first
	// seen on the device (zero when none is pending).
	SuspectSince time.Time `json:"suspect_since,omitzero"`
	// RollbackAt is when the device's rollback switched it back; RestoredAt
	// when the old slot was verified running and passing its checks there
	// (I2: a device is rolled-back only then).
	RollbackAt time.Time `json:"rollback_at,omitzero"`
	RestoredAt time.Time `json:"restored_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Baseline and After are the device agent's metrics before the switch
	// and at the end of the soak (for the report's health delta).
	Baseline *Metrics `json:"baseline,omitempty"`
	After    *Metrics `json:"after,omitempty"`
	// Trend are the samples of a canary device's soak (gradual
	// degradation is judged on them).
	Trend *TrendSamples `json:"trend,omitempty"`
	// Live is the slot whose instance carries the device's traffic in a
	// blue-green run (TrafficRouter): the active slot until the candidate
	// passed its checks, then the candidate; "" when the run never routed
	// the device.
	Live string `json:"live,omitempty"`

	// Index is the Consul KV modify index the record was read at (CAS).
	Index uint64 `json:"-"`
}

// Metrics are an application's measurements on one device.
type Metrics struct {
	ErrorRate    float64 `json:"error_rate"`
	P95LatencyMS float64 `json:"p95_latency_ms"`
	CPUPercent   float64 `json:"cpu_percent"`
	MemoryMB     float64 `json:"memory_mb"`
	TemperatureC float64 `json:"temperature_c,omitempty"`
}

// StageRecord is the outcome of one stage.
type StageRecord struct {
	Name      string        `json:"name"`
	Canary    bool          `json:"canary"`
	Percent   float64       `json:"percent"`
	Soak      time.Duration `json:"soak"`
	Devices   int           `json:"devices"`
	Attempted int           `json:"attempted"`
	Failed    int           `json:"failed"`
	Offline   int           `json:"offline"`
	Verdict   string        `json:"verdict,omitempty"` // passed | failed | ""
	StartedAt time.Time     `json:"started_at,omitempty"`
	SoakUntil time.Time     `json:"soak_until,omitempty"`
	// Extended is set when the soak was extended once because a metric
	// trended towards its limit (gradual degradation).
	Extended bool `json:"extended,omitempty"`
	// Degradation is the gradual-degradation verdict reached at the end
	// of the soak; persisted with the step, so the gate of a restarted
	// controller acts on it (I7).
	Degradation string    `json:"degradation,omitempty"`
	FinishedAt  time.Time `json:"finished_at,omitempty"`
}

// Decision is one decision the controller took, with its reason and the
// numbers behind it.
type Decision struct {
	Time    time.Time          `json:"time"`
	Phase   Phase              `json:"phase"`
	Stage   string             `json:"stage,omitempty"`
	Kind    DecisionKind       `json:"kind"`
	Reason  string             `json:"reason"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
	// Analysis explains a rollback after a failed gate.
	Analysis *FailureAnalysis `json:"analysis,omitempty"`
	// Halt is set on a "halted" decision.
	Halt *Halt `json:"halt,omitempty"`
	// Checklist is set on the "preflight" decision.
	Checklist Checklist `json:"checklist,omitempty"`
}

// ApprovalRecord is an operator's approval of the canary.
type ApprovalRecord struct {
	Actor   string    `json:"actor"`
	Time    time.Time `json:"time"`
	Message string    `json:"message,omitempty"`
	// Saw is what the canary looked like when it was approved.
	Saw string `json:"saw,omitempty"`
}

// Request is an operator's request (pause, rollback).
type Request struct {
	Actor  string    `json:"actor"`
	Time   time.Time `json:"time"`
	Reason string    `json:"reason,omitempty"`
}

// Controls are what operators ask of a running rollout. They live under
// their own keys so that the controller stays the only writer of the state.
type Controls struct {
	Approval *ApprovalRecord `json:"approval,omitempty"`
	Pause    *Request        `json:"pause,omitempty"`
	Rollback *Request        `json:"rollback,omitempty"`
}

// Rollout is the persisted state of one rollout run, under
// fleetplan/rollouts/<rollout>/state (the devices under .../devices/).
type Rollout struct {
	// App is the rollout label; ID identifies this run.
	App             string `json:"app"`
	ID              string `json:"id"`
	Version         string `json:"version"`
	PreviousVersion string `json:"previous_version,omitempty"`
	// PreviousActive is the active-slot record the run started from; a
	// rollback puts it back if CONFIRM had already replaced it.
	PreviousActive *ActiveSlot `json:"previous_active,omitempty"`
	Strategy       Strategy    `json:"strategy"`
	PolicyFile     string      `json:"policy_file,omitempty"`
	// Active is the colour of the stable slot ("" on a first install);
	// Candidate the colour that receives the new version.
	Active    string `json:"active"`
	Candidate string `json:"candidate"`

	Phase  Phase `json:"phase"`
	Stage  int   `json:"stage"`
	Step   Step  `json:"step,omitempty"`
	Paused bool  `json:"paused,omitempty"`
	// Halt is set while the rollout waits for an operator.
	Halt *Halt `json:"halt,omitempty"`

	// The rollback in progress (phase ROLLING_BACK): its scope, the stage
	// it started from, and why.
	RollbackScope  RollbackScope `json:"rollback_scope,omitempty"`
	RollbackStage  int           `json:"rollback_stage,omitempty"`
	RollbackReason string        `json:"rollback_reason,omitempty"`

	Stages    []StageRecord   `json:"stages"`
	Decisions []Decision      `json:"decisions"`
	Approval  *ApprovalRecord `json:"approval,omitempty"`
	Excluded  []ExcludedRef   `json:"excluded,omitempty"`
	// Fenced are devices whose stale slot metadata names the candidate's
	// colour and that could not be reconciled (offline): the candidate
	// job is registered with a constraint that keeps it off them (I1).
	Fenced []DeviceRef `json:"fenced,omitempty"`

	// RollbackTimes measures a rollback: from its trigger to the traffic
	// back on the old slot (blue-green) and to the candidate stopped.
	RollbackTimes *RollbackTimes `json:"rollback_times,omitempty"`

	Outcome    Outcome   `json:"outcome,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitempty"`
	LastAction string    `json:"last_action,omitempty"`

	// AB is an a-b run's comparison of its groups, once made (ab.go).
	AB *ABComparison `json:"ab,omitempty"`

	Devices map[string]*DeviceRecord `json:"-"`
	Index   uint64                   `json:"-"`
}

// ExcludedRef is a device left out of the rollout, with the reason.
type ExcludedRef struct {
	DeviceRef
	Reason string `json:"reason"`
}

// Finished reports whether the run is over.
func (r *Rollout) Finished() bool {
	return r.Outcome != OutcomeNone
}

// ActiveSlot records which slot of an application runs the stable version,
// under fleetplan/apps/<app>.
type ActiveSlot struct {
	Slot      string    `json:"slot"`
	Version   string    `json:"version"`
	RolloutID string    `json:"rollout_id"`
	Since     time.Time `json:"since"`
	Index     uint64    `json:"-"`
}

// ErrDeviceOffline is wrapped by cluster operations that could not reach a
// device. Such a device is skipped and tracked, never counted as failed.
var ErrDeviceOffline = errors.New("device offline")

// ErrControlPlane is wrapped by cluster operations that failed because
// Nomad or Consul did not answer properly (a 5xx, a timeout, a leader
// election, a refused connection). It says nothing about the device: the
// controller retries the action and then pauses the rollout, and never
// counts it as a device failure or as success (I5).
var ErrControlPlane = errors.New("control plane unavailable")

// ErrConflict is returned by a Store when a check-and-set write lost.
var ErrConflict = errors.New("state changed underneath (check-and-set conflict)")

// Cluster is what the controller needs from Nomad. jobs.Nomad implements it.
type Cluster interface {
	// PrepareCandidate registers the candidate slot job for the release. It
	// never modifies the active slot's job.
	//
	// The job must not be placed on the devices of r.Fenced.
	PrepareCandidate(ctx context.Context, r *Rollout) error
	// RetireCandidate stops the candidate slot job of a run that was
	// rolled back, so that the rejected release runs nowhere, not even on
	// a device that returns with its metadata still naming it. It never
	// touches the active slot's job.
	RetireCandidate(ctx context.Context, r *Rollout) error
	// SwitchDevice moves one device from slot `from` to slot `to` ("" means
	// no slot: used to install the first version and to remove it again):
	// it sets the node's slot metadata, waits until the server sees it, and
	// stops the `from` slot's allocation on the node. Each step is
	// idempotent and has a deadline. An unreachable device yields an error
	// wrapping ErrDeviceOffline.
	SwitchDevice(ctx context.Context, dev DeviceRef, from, to string) error
}

// TrafficRouter is implemented by clusters that select which of a
// device's slot instances receives its traffic (blue-green keeps both
// running). jobs.TrafficCluster implements it in the Consul catalog.
type TrafficRouter interface {
	// RouteTraffic makes slot's instance of the application on dev the
	// live one, in one write (never two live instances, never none while
	// slot's instance is registered); slot "" withdraws the device's
	// traffic entry. It does not depend on the device being reachable.
	RouteTraffic(ctx context.Context, r *Rollout, dev DeviceRef, slot string) error
}

// CapacitySource is implemented by clusters that can tell whether the
// devices have room for a slot allocation beside the one they run (the
// blue-green standby window runs both).
type CapacitySource interface {
	SlotCapacity(ctx context.Context, devices []DeviceRef) (*Capacity, error)
}

// Resources are a slot allocation's demand or a device's room.
type Resources struct {
	CPUMHz   int `json:"cpu_mhz"`
	MemoryMB int `json:"memory_mb"`
}

// Fits reports whether need fits into r.
func (r Resources) Fits(need Resources) bool {
	return need.CPUMHz <= r.CPUMHz && need.MemoryMB <= r.MemoryMB
}

// Capacity is the slot job's demand per device class and each device's
// room for the application: its capacity (Nomad's node resources minus
// the reserved) minus what allocations of other jobs use.
type Capacity struct {
	// PerClass is one slot allocation's demand on a device of the class.
	PerClass map[string]Resources `json:"per_class"`
	// Room is, by device ID, what the application's slots may use.
	Room map[string]Resources `json:"room"`
}

// RollbackTimes are a rollback's measured times. TriggeredAt is when the
// rollback was decided (a failed gate, a breach, an operator's request).
type RollbackTimes struct {
	TriggeredAt time.Time `json:"triggered_at"`
	// TrafficBackAt is when every device the rollback covered had its
	// traffic on the old slot again (blue-green only).
	TrafficBackAt time.Time `json:"traffic_back_at,omitzero"`
	// CandidateStoppedAt is when the candidate's allocation was stopped on
	// every reachable device the rollback covered.
	CandidateStoppedAt time.Time `json:"candidate_stopped_at,omitzero"`
	Devices            int       `json:"devices"`
}

// TrafficBack is the time from the trigger to the traffic back (0 when
// not measured).
func (t *RollbackTimes) TrafficBack() time.Duration {
	if t == nil || t.TrafficBackAt.IsZero() {
		return 0
	}
	return t.TrafficBackAt.Sub(t.TriggeredAt)
}

// CandidateStopped is the time from the trigger to the candidate stopped
// (0 when not measured).
func (t *RollbackTimes) CandidateStopped() time.Duration {
	if t == nil || t.CandidateStoppedAt.IsZero() {
		return 0
	}
	return t.CandidateStoppedAt.Sub(t.TriggeredAt)
}

// HealthSource reports the candidate's health on devices. checks.Watcher
// implements it from blocking queries; it never polls devices one by one.
type HealthSource interface {
	Health(ctx context.Context, r *Rollout, devices []DeviceRef) (map[string]DeviceHealth, error)
}

// BaselineSource is implemented by health sources that can measure the
// active slot on a device before it switches (the baseline the p95 latency
// trigger and the report's health delta compare with).
type BaselineSource interface {
	Baseline(ctx context.Context, r *Rollout, devices []DeviceRef) (map[string]*Metrics, error)
}

// SummarySource is implemented by health sources that can ask the device
// agents for a fresh summary of their own measurements and collect the
// answers. The agents judge the policy's triggers on the device (their
// check statuses carry the verdicts, and propagate at once); the numbers
// travel in these summaries, once per request, because check outputs may
// reach the servers minutes late.
type SummarySource interface {
	// Summaries asks the devices for a fresh summary and returns the
	// answers that came before ctx ended, keyed by device ID. A device
	// missing from the result did not answer: no evidence, neither a
	// pass nor a failure. An error says the request could not be made or
	// no answer could be read; what came is still returned.
	Summaries(ctx context.Context, r *Rollout, devices []DeviceRef) (map[string]DeviceSummary, error)
}

// DeviceSummary is one device's answer to a summary request.
type DeviceSummary struct {
	// Version is the version the agent measured (the live instance).
	Version string
	// Current is the agent's latest measurement; nil when it had none.
	Current *Metrics
	// Baseline is the device's own measurement of the version before the
	// switch (BaselineVersion), nil when the agent saw no other version.
	Baseline        *Metrics
	BaselineVersion string
	// Layers are the agent's verdicts per layer ("passing", "warning",
	// "critical"), by layer name.
	Layers map[string]string
	// Reasons are the agent's reasons for its verdicts, by layer name.
	Reasons map[string]string
	// AllocID is the allocation the agent measured.
	AllocID string
}

// SummaryReader is implemented by health sources that can read a device
// agent's latest summary as it stands, without asking for a new one (one
// read of one device). The controller reads it for a device that fails on
// a check: a check's output reaches the servers only when its status
// changes (or a check_update_interval later), so the reason it shows may
// be that of its first failure; the agent's summary has the latest.
type SummaryReader interface {
	LatestSummary(ctx context.Context, r *Rollout, d DeviceRef) (DeviceSummary, bool, error)
}

// DeviceHealth is what the cluster says about the candidate on one device.
type DeviceHealth struct {
	// Online: Nomad reports the node ready and its Consul agent is alive.
	Online bool `json:"online"`
	// Alloc is the candidate slot's allocation on the device, nil if none.
	Alloc *AllocHealth `json:"alloc,omitempty"`
	// Checks are the Consul checks of the candidate's services and of the
	// device agent's layers on the device.
	Checks []CheckResult `json:"checks,omitempty"`
	// Version the application reports, "" when unknown.
	Version string   `json:"version,omitempty"`
	Metrics *Metrics `json:"metrics,omitempty"`
}

// AllocHealth is a slot allocation's state.
type AllocHealth struct {
	ID       string `json:"id"`
	Status   string `json:"status"` // pending | running | complete | failed | lost
	Restarts int    `json:"restarts"`
	// Version is the job meta fleetplan_version of the allocation's job.
	Version string `json:"version,omitempty"`
}

// CheckResult is one Consul check's state.
type CheckResult struct {
	Name   string `json:"name"`
	Layer  int    `json:"layer"` // 1..4, 0 when not a fleetplan layer check
	Status string `json:"status"`
	Output string `json:"output,omitempty"`
}

// VerdictStatus is a gate's verdict on one device.
type VerdictStatus string

const (
	VerdictPending VerdictStatus = "pending"
	VerdictPass    VerdictStatus = "pass"
	VerdictFail    VerdictStatus = "fail"
)

// Verdict is a gate's verdict on one device, with the reason.
type Verdict struct {
	Status VerdictStatus `json:"status"`
	Layer  int           `json:"layer,omitempty"`
	Reason string        `json:"reason,omitempty"`
	// Confirm marks a failure seen in one reading of a check (a critical
	// check): the controller fails the device only when a later reading,
	// after the check ran again, still fails it, so that a check caught
	// in a transient (an application still binding its port after its
	// device's agents were frozen) is no verdict. Crash loops, failed
	// allocations and wrong versions need no confirmation.
	Confirm bool `json:"confirm,omitempty"`
	// Connectivity marks a pending verdict whose evidence is the device's
	// connectivity check (layer 1) failing: its node agents are going
	// away. At the end of a soak such a device is offline, not failed,
	// even while the servers still list it as up.
	Connectivity bool `json:"connectivity,omitempty"`
}

// Gate turns one device's health into a verdict. The controller only reacts
// to verdicts; measurement lives behind HealthSource.
type Gate interface {
	Evaluate(p *Policy, rec *DeviceRecord, h DeviceHealth, now time.Time) Verdict
}

// Store persists rollouts with check-and-set writes. store.Consul
// implements it on Consul KV.
type Store interface {
	// Load returns the current run of a rollout with its devices, or nil.
	Load(ctx context.Context, app string) (*Rollout, error)
	// SaveRollout writes the run (not its devices) if it was not changed
	// since r.Index, and updates r.Index; ErrConflict otherwise.
	SaveRollout(ctx context.Context, r *Rollout) error
	// SaveDevice writes one device record with check-and-set on d.Index.
	SaveDevice(ctx context.Context, app string, d *DeviceRecord) error
	// SaveDevices writes device records, in order, each with check-and-set
	// on its Index and with SaveDevice's guarantees, in as few round
	// trips as the store allows (store.Consul: one transaction per
	// DeviceBatch records). It sets the Index of every record written and
	// returns how many of recs, from the first, were written, also with an
	// error: a batch is written whole or not at all.
	SaveDevices(ctx context.Context, app string, recs []*DeviceRecord) (int, error)
	// Controls returns the operators' requests; with waitIndex > 0 it
	// blocks until they change or ctx/wait ends.
	Controls(ctx context.Context, app string, waitIndex uint64, wait time.Duration) (Controls, uint64, error)
	// ClearControls removes the requests (when a new run starts).
	ClearControls(ctx context.Context, app string) error
	ActiveSlot(ctx context.Context, app string) (*ActiveSlot, error)
	SetActiveSlot(ctx context.Context, app string, s *ActiveSlot) error
	// Archive keeps a finished run under .../history/<id>.
	Archive(ctx context.Context, r *Rollout) error
}

// Registry is the controller's view of the device registry.
type Registry interface {
	// Devices returns the devices matching the fleet selector.
	Devices(ctx context.Context, p *Policy) ([]Device, error)
	// Quarantine marks a device quarantined with a reason.
	Quarantine(ctx context.Context, deviceID, reason string) error
}

// Clock is injected time.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
