// Package plugin holds fleetplan's functional probes, its extension point for
// health layer 4: the device agent runs them against each application
// instance and answers Consul's HTTP check with their verdict. Notifiers are
// not plugins: they are in package notify, configured by a policy's notify
// blocks.
//
// A probe is a small Base interface plus the narrow Probe interface; the
// core only ever sees the narrow one. Every method takes a context. The
// interfaces use plain data (no funcs, no channels) so that external probes
// served over hashicorp/go-plugin (gRPC) can implement them later without
// changing the core.
package plugin

import (
	"context"
	"time"
)

// Plugin types.
const (
	TypeProbe = "probe"
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
