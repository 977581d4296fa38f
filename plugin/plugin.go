// Package plugin holds fleetplan's extension points: functional probes (the
// device agent runs them for health layer 4) and notifiers (told about phase
// changes, approvals needed and rollbacks).
//
// Each plugin type is a small Base interface plus one narrow runtime
// interface; the core only ever sees the narrow one. Every method takes a
// context. The interfaces use plain data (no funcs, no channels) so that
// external plugins served over hashicorp/go-plugin (gRPC) can implement them
// later without changing the core.
package plugin

import (
	"context"
	"time"
)

// Plugin types.
const (
	TypeProbe    = "probe"
	TypeNotifier = "notifier"
)

// Info describes a plugin.
type Info struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Version string `json:"version"`
}

// Field is one attribute of a plugin's configuration schema, so that the
// policy decoder can report a bad or missing attribute at its file:line.
type Field struct {
	Name        string `json:"name"`
	Type        string `json:"type"` // string | number | bool | duration | map(string) | list(string)
	Required    bool   `json:"required"`
	Description string `json:"description"`
}

// Base is what every plugin implements.
type Base interface {
	PluginInfo() Info
	// ConfigSchema declares the attributes SetConfig accepts.
	ConfigSchema() []Field
	// SetConfig configures the plugin; values are strings as written in
	// the policy (durations like "250ms", maps as JSON objects).
	SetConfig(ctx context.Context, config map[string]string) error
}

// Status is a probe's verdict, in Consul's terms.
type Status string

const (
	StatusPassing  Status = "passing"
	StatusWarning  Status = "warning"
	StatusCritical Status = "critical"
)

// Target is what a probe checks: one application instance on one device.
type Target struct {
	// Address is host:port of the application instance.
	Address string `json:"address"`
	Node    string `json:"node"`
	Service string `json:"service"`
}

// Result is a probe's outcome. Output is for people: the measured numbers
// and the thresholds they were compared with.
type Result struct {
	Status  Status        `json:"status"`
	Output  string        `json:"output"`
	Latency time.Duration `json:"latency"`
}

// Probe checks an application instance's function (health layer 4).
type Probe interface {
	Base
	Probe(ctx context.Context, target Target) (Result, error)
}

// Notification kinds.
const (
	NotifyPhaseChange    = "phase-change"
	NotifyApprovalNeeded = "approval-needed"
	NotifyRollback       = "rollback"
	NotifyDone           = "done"
)

// Notification is what notifiers are told.
type Notification struct {
	Kind    string             `json:"kind"`
	Time    time.Time          `json:"time"`
	Rollout string             `json:"rollout"`
	RunID   string             `json:"run_id"`
	Version string             `json:"version"`
	Phase   string             `json:"phase"`
	Message string             `json:"message"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
	// Analysis explains a rollback after a failed gate (nil otherwise).
	Analysis *FailureAnalysis `json:"analysis,omitempty"`
}

// FailureAnalysis is the pattern of a failed stage's failures, as data:
// Kind is artifact, compatibility, infrastructure or inconclusive.
type FailureAnalysis struct {
	Kind     string   `json:"kind"`
	Summary  string   `json:"summary"`
	Classes  []string `json:"classes,omitempty"`
	Layer    int      `json:"layer,omitempty"`
	Examples []string `json:"examples,omitempty"`
}

// Notifier tells people or systems about a rollout.
type Notifier interface {
	Base
	Notify(ctx context.Context, n Notification) error
}
