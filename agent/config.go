package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// DefaultKVPrefix is the Consul KV folder holding one AppConfig per
// application, at <prefix>/<app>.
const DefaultKVPrefix = store.DefaultAgentConfigPrefix

// Defaults of the layer 2 thresholds, used for every threshold no
// application on the device sets.
const (
	DefaultMaxCPUPercent    = 90
	DefaultMaxMemoryPercent = 90
	DefaultMaxDiskPercent   = 95
	DefaultMaxTemperatureC  = 85

	// DefaultHealthPath is the application health path when the
	// application has no AppConfig (the policy's default too).
	DefaultHealthPath = "/health"
)

// AppConfig is what the device agent knows of one application: the part of
// its rollout policy that the probes need. `fleetplan apply` writes it as
// JSON to Consul KV at <prefix>/<app> (WriteAppConfig); every agent follows
// the folder with a blocking query.
type AppConfig struct {
	App string `json:"app"`
	// HealthPath is the application's health endpoint on the service's
	// address and port.
	HealthPath string `json:"health_path"`
	// ExpectVersion: the version the health endpoint reports must equal
	// the instance's fleetplan-version tag.
	ExpectVersion bool `json:"expect_version"`
	// Interval and Timeout of the layer 3 check (0: the agent's defaults).
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	// System holds the layer 2 thresholds; 0 leaves a threshold to the
	// other applications on the device or to the default.
	System *SystemThresholds `json:"system,omitempty"`
	// Functional is the layer 4 probe; nil registers no layer 4 check.
	Functional *FunctionalConfig `json:"functional,omitempty"`
	// HeartbeatTimeout is the longest accepted age of the Nomad client's
	// last heartbeat (layer 1); 0 is unknown.
	HeartbeatTimeout Duration `json:"heartbeat_timeout,omitempty"`
	// Metrics says where and how the application's metrics are read (nil:
	// JSON at DefaultMetricsPath).
	Metrics *MetricsConfig `json:"metrics,omitempty"`
	// The policy's metric triggers, judged on the device (edge-local
	// verdicts, see verdicts.go): the error rate, and the p95 latency
	// against the device's own pre-switch baseline (or, without one, the
	// functional block's max_latency); 0 is not set.
	MaxErrorRate                 float64 `json:"max_error_rate,omitempty"`
	MaxP95LatencyIncreasePercent float64 `json:"max_p95_latency_increase_percent,omitempty"`
	// TrendHorizon is how far ahead the resource trends are projected
	// against their limits (the soak of the stage after the canary); 0
	// judges no trend.
	TrendHorizon Duration `json:"trend_horizon,omitempty"`
	// SummaryRequest names the controller's latest request for device
	// summaries: each agent running an instance of the application writes
	// its summary (contract.SummaryKey) once per new value.
	SummaryRequest string `json:"summary_request,omitempty"`
	// Recheck asks the agents on the nodes it names to run the
	// application's checks at once and answer with a summary whose
	// request is its ID (`fleetplan recheck`); the other agents ignore it.
	Recheck *Recheck `json:"recheck,omitempty"`
}

// Recheck is an on-demand re-check of some devices.
type Recheck struct {
	ID    string   `json:"id"`
	Nodes []string `json:"nodes"`
}

// SystemThresholds are the layer 2 limits; a zero field is not set.
type SystemThresholds struct {
	MaxCPUPercent    float64 `json:"max_cpu_percent,omitempty"`
	MaxMemoryPercent float64 `json:"max_memory_percent,omitempty"`
	MaxDiskPercent   float64 `json:"max_disk_percent,omitempty"`
	MaxTemperatureC  float64 `json:"max_temperature_c,omitempty"`
}

// FunctionalConfig is the layer 4 probe of an application.
type FunctionalConfig struct {
	// Probe names the probe plugin (plugin.NewProbe), e.g. "http-json".
	Probe string `json:"probe"`
	Path  string `json:"path,omitempty"`
	// Input is the test input, as the policy gives it (JSON for http-json).
	Input string `json:"input,omitempty"`
	// Expect maps output fields to their expected values.
	Expect     map[string]string `json:"expect,omitempty"`
	MaxLatency Duration          `json:"max_latency,omitempty"`
	Interval   Duration          `json:"interval,omitempty"`
	// Command (probe "exec") names an entry of each agent's own
	// allow-list, never a program; Args are given to that program.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
}

// Duration is a time.Duration written in JSON as Go duration text ("5s");
// a number is read as nanoseconds.
type Duration time.Duration

// D is the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON writes "5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "5s" or a number of nanoseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("duration %s: neither text like \"5s\" nor nanoseconds", b)
	}
	*d = Duration(n)
	return nil
}

// NewAppConfig extracts the agent's part of a rollout policy.
func NewAppConfig(p *scheduler.Policy) (*AppConfig, error) {
	if p == nil || p.Name == "" {
		return nil, errors.New("agent app config: the policy has no rollout name")
	}
	h := p.Health
	c := &AppConfig{
		App:              p.Name,
		HealthPath:       h.Application.Path,
		ExpectVersion:    h.Application.ExpectVersion,
		Interval:         Duration(h.Application.Interval),
		Timeout:          Duration(h.Application.Timeout),
		HeartbeatTimeout: Duration(h.Connectivity.HeartbeatTimeout),
	}
	if c.HealthPath == "" {
		c.HealthPath = DefaultHealthPath
	}
	c.MaxErrorRate = p.Rollback.MaxErrorRate
	c.MaxP95LatencyIncreasePercent = p.Rollback.MaxP95LatencyIncreasePercent
	if st := p.Stages(); len(st) > 1 {
		c.TrendHorizon = Duration(st[1].Soak)
	} else if len(st) == 1 {
		c.TrendHorizon = Duration(st[0].Soak)
	}
	if m := h.Application.Metrics; m != nil {
		c.Metrics = &MetricsConfig{Path: m.Path, Format: m.Format, Requests: m.Requests, Errors: m.Errors, Latency: m.Latency}
		if c.Metrics.Path != "" {
			if err := ValidProbePath(c.Metrics.Path); err != nil {
				return nil, fmt.Errorf("agent app config of %s: metrics path: %w", p.Name, err)
			}
		}
		if c.Metrics.Format == MetricsFormatPrometheus {
			if _, err := newPromMapping(*c.Metrics); err != nil {
				return nil, fmt.Errorf("agent app config of %s: %w", p.Name, err)
			}
		}
	}
	if s := h.System; s != nil {
		c.System = &SystemThresholds{
			MaxCPUPercent:    s.MaxCPUPercent,
			MaxMemoryPercent: s.MaxMemoryPercent,
			MaxDiskPercent:   s.MaxDiskPercent,
			MaxTemperatureC:  s.MaxTemperatureC,
		}
	}
	// I11: the agents take these paths from KV; refuse what they would.
	if err := ValidProbePath(c.HealthPath); err != nil {
		return nil, fmt.Errorf("agent app config of %s: health path: %w", p.Name, err)
	}
	if f := h.Functional; f != nil && f.Command != "" && !plugin.ValidExecCommandName(f.Command) {
		return nil, fmt.Errorf("agent app config of %s: exec command %q is not a name of an agent allow-list (1 to %d letters, digits, \".\", \"_\" or \"-\")", p.Name, f.Command, plugin.MaxExecCommandNameLen)
	}
	if f := h.Functional; f != nil && f.Path != "" {
		if err := ValidProbePath(f.Path); err != nil {
			return nil, fmt.Errorf("agent app config of %s: functional path: %w", p.Name, err)
		}
	}
	if f := h.Functional; f != nil {
		c.Functional = &FunctionalConfig{
			Probe:      f.Probe,
			Path:       f.Path,
			Input:      f.Input,
			Expect:     maps.Clone(f.Expect),
			MaxLatency: Duration(f.MaxLatency),
			Interval:   Duration(f.Interval),
			Command:    f.Command,
			Args:       slices.Clone(f.Args),
		}
	}
	return c, nil
}

// AppConfigKey is the KV key of an application's config under prefix.
func AppConfigKey(prefix, app string) string {
	return store.AgentConfigKey(prefix, app)
}

// WriteAppConfig writes the agent's part of the policy to Consul KV at
// <prefix>/<p.Name> (prefix "" is DefaultKVPrefix). `fleetplan apply` calls
// it before it moves the first device, so that the agents register the
// application's checks with the policy's thresholds.
func WriteAppConfig(ctx context.Context, kv *consulapi.KV, prefix string, p *scheduler.Policy) error {
	c, err := NewAppConfig(p)
	if err != nil {
		return err
	}
	if prefix == "" {
		prefix = DefaultKVPrefix
	}
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encoding the agent config of %s: %w", p.Name, err)
	}
	key := AppConfigKey(prefix, p.Name)
	if _, err := kv.Put(&consulapi.KVPair{Key: key, Value: b}, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("writing the agent config of %s to Consul KV %s: %w", p.Name, key, err)
	}
	return nil
}

// DeleteAppConfig removes an application's config (its agents then stop
// registering its layer 4 check).
func DeleteAppConfig(ctx context.Context, kv *consulapi.KV, prefix, app string) error {
	if prefix == "" {
		prefix = DefaultKVPrefix
	}
	key := AppConfigKey(prefix, app)
	if _, err := kv.Delete(key, (&consulapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("deleting the agent config %s: %w", key, err)
	}
	return nil
}

// decodeAppConfigs reads the KV folder. A value that does not decode is
// reported and left out; the others still apply.
func decodeAppConfigs(prefix string, pairs consulapi.KVPairs) (map[string]*AppConfig, []error) {
	out := map[string]*AppConfig{}
	var errs []error
	base := strings.TrimSuffix(prefix, "/") + "/"
	for _, kv := range pairs {
		app := strings.TrimPrefix(kv.Key, base)
		if app == "" || strings.Contains(app, "/") {
			continue
		}
		var c AppConfig
		if err := json.Unmarshal(kv.Value, &c); err != nil {
			errs = append(errs, fmt.Errorf("KV %s: %w", kv.Key, err))
			continue
		}
		if c.App == "" {
			c.App = app
		}
		if c.HealthPath == "" {
			c.HealthPath = DefaultHealthPath
		}
		out[app] = &c
	}
	return out, errs
}

// Thresholds are the effective layer 2 limits of a device; a zero field is
// not checked.
type Thresholds struct {
	CPUPercent    float64
	MemoryPercent float64
	DiskPercent   float64
	TemperatureC  float64
}

// DefaultThresholds are the limits when no application sets any.
var DefaultThresholds = Thresholds{
	CPUPercent:    DefaultMaxCPUPercent,
	MemoryPercent: DefaultMaxMemoryPercent,
	DiskPercent:   DefaultMaxDiskPercent,
	TemperatureC:  DefaultMaxTemperatureC,
}

// ParseThresholds reads the agent's own layer 2 defaults, written
// "cpu=90,memory=90,disk=95,temperature=85" (any subset; the others keep
// DefaultThresholds). "off" leaves a metric unchecked unless a policy sets
// it.
func ParseThresholds(s string) (Thresholds, error) {
	t := DefaultThresholds
	fields := map[string]*float64{"cpu": &t.CPUPercent, "memory": &t.MemoryPercent, "disk": &t.DiskPercent, "temperature": &t.TemperatureC}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		f := fields[strings.TrimSpace(name)]
		if !ok || f == nil {
			return Thresholds{}, fmt.Errorf("threshold %q: want NAME=VALUE with NAME one of cpu, memory, disk, temperature", part)
		}
		val = strings.TrimSpace(val)
		if val == "off" {
			*f = -1
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
		if err != nil || v <= 0 {
			return Thresholds{}, fmt.Errorf("threshold %q: want a positive number or \"off\"", part)
		}
		*f = v
	}
	return t, nil
}

// StrictestThresholds merges the layer 2 limits of the applications on a
// device: per metric the lowest one an application sets, else the default.
func StrictestThresholds(apps []*AppConfig) Thresholds {
	return strictestThresholds(apps, DefaultThresholds)
}

// strictestThresholds is StrictestThresholds with the agent's own defaults
// (a negative default: not checked unless a policy sets it).
func strictestThresholds(apps []*AppConfig, defaults Thresholds) Thresholds {
	t := Thresholds{}
	lower := func(cur *float64, v float64) {
		if v > 0 && (*cur == 0 || v < *cur) {
			*cur = v
		}
	}
	for _, a := range apps {
		if a == nil || a.System == nil {
			continue
		}
		lower(&t.CPUPercent, a.System.MaxCPUPercent)
		lower(&t.MemoryPercent, a.System.MaxMemoryPercent)
		lower(&t.DiskPercent, a.System.MaxDiskPercent)
		lower(&t.TemperatureC, a.System.MaxTemperatureC)
	}
	def := defaults
	for _, f := range []struct {
		cur *float64
		def float64
	}{
		{&t.CPUPercent, def.CPUPercent}, {&t.MemoryPercent, def.MemoryPercent},
		{&t.DiskPercent, def.DiskPercent}, {&t.TemperatureC, def.TemperatureC},
	} {
		if *f.cur == 0 {
			*f.cur = f.def
		}
	}
	return t
}

// StrictestHeartbeatTimeout is the shortest heartbeat timeout of the
// applications (0: none known).
func StrictestHeartbeatTimeout(apps []*AppConfig) time.Duration {
	var out time.Duration
	for _, a := range apps {
		if a == nil {
			continue
		}
		if d := a.HeartbeatTimeout.D(); d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// sortedApps returns the configs ordered by application name.
func sortedApps(m map[string]*AppConfig) []*AppConfig {
	out := make([]*AppConfig, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}
