package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
)

// minProbeTimeout is the least time a functional probe is given.
const minProbeTimeout = 2 * time.Second

// execProbeMargin is the time an exec probe is given past its program's
// timeout, to kill it and report that.
const execProbeMargin = 500 * time.Millisecond

// ProbeFactory makes a probe plugin by name (plugin.NewProbe).
type ProbeFactory func(name string) (plugin.Probe, error)

// probeTimeout is how long one functional probe may take: four times its
// latency bound, at least minProbeTimeout, so that a slow answer is judged
// by the probe ("max 250ms exceeded") rather than cut off by Consul.
func probeTimeout(f *FunctionalConfig) time.Duration {
	d := 4 * f.MaxLatency.D()
	if d < minProbeTimeout {
		d = minProbeTimeout
	}
	return d
}

// pluginConfig is the probe plugin's configuration from the functional
// block: the attributes of the block that the plugin's schema declares.
func pluginConfig(p plugin.Probe, f *FunctionalConfig) (map[string]string, error) {
	all := map[string]string{"timeout": probeTimeout(f).String()}
	if f.Path != "" {
		all["path"] = f.Path
	}
	if f.Input != "" {
		all["input"] = f.Input
	}
	if len(f.Expect) > 0 {
		b, err := json.Marshal(f.Expect)
		if err != nil {
			return nil, err
		}
		all["expect"] = string(b)
	}
	if f.MaxLatency > 0 {
		all["max_latency"] = f.MaxLatency.String()
	}
	var names []string
	for _, fl := range p.ConfigSchema() {
		names = append(names, fl.Name)
	}
	out := map[string]string{}
	for k, v := range all {
		if slices.Contains(names, k) {
			out[k] = v
		}
	}
	return out, nil
}

// functionalProbes keeps one configured probe per service instance, made
// again when the application's functional block changes.
type functionalProbes struct {
	factory ProbeFactory
	// allow maps exec command names to this agent's programs.
	allow ExecAllowList

	mu     sync.Mutex
	probes map[string]cachedProbe // by service ID
}

type cachedProbe struct {
	key   string // the functional block, as JSON
	probe plugin.Probe
}

func newFunctionalProbes(f ProbeFactory) *functionalProbes {
	return &functionalProbes{factory: f, probes: map[string]cachedProbe{}}
}

// get returns the configured probe of an instance.
func (fp *functionalProbes) get(ctx context.Context, serviceID string, f *FunctionalConfig) (plugin.Probe, error) {
	b, _ := json.Marshal(f)
	key := string(b)
	fp.mu.Lock()
	defer fp.mu.Unlock()
	if c, ok := fp.probes[serviceID]; ok && c.key == key {
		return c.probe, nil
	}
	if fp.factory == nil {
		return nil, errors.New("this agent has no probe plugins")
	}
	var cfg map[string]string
	var err error
	if f.Probe == execProbeName {
		// Never a program from KV: the name maps to the local allow-list.
		if cfg, err = fp.allow.execPluginConfig(f); err != nil {
			return nil, err
		}
	}
	p, err := fp.factory(f.Probe)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		if cfg, err = pluginConfig(p, f); err != nil {
			return nil, err
		}
	}
	if err := p.SetConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("configuring probe %s: %w", f.Probe, err)
	}
	fp.probes[serviceID] = cachedProbe{key: key, probe: p}
	return p, nil
}

// forget drops the probes of instances that are gone.
func (fp *functionalProbes) forget(keep func(serviceID string) bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for id := range fp.probes {
		if !keep(id) {
			delete(fp.probes, id)
		}
	}
}

// ProbeFunctional runs the application's layer 4 probe against the
// instance. The output's first line is the verdict and the probe's own
// words (the field that was wrong, the latency against max_latency).
func (fp *functionalProbes) ProbeFunctional(ctx context.Context, inst Instance, node string, f *FunctionalConfig) (plugin.Status, string) {
	if f.Path != "" {
		if err := ValidProbePath(f.Path); err != nil {
			// I11: a path from Consul KV never leads a probe to another host.
			return Critical, oneLine(fmt.Sprintf("critical: the functional probe %q is refused: %v; probes run only against the instance (%s)", f.Probe, err, inst.HostPort())) + "\n"
		}
	}
	p, err := fp.get(ctx, inst.ServiceID, f)
	if err != nil {
		return Critical, oneLine(fmt.Sprintf("critical: the functional probe %q cannot run: %v", f.Probe, err)) + "\n"
	}
	timeout := fp.allow.timeout(f)
	limit := timeout
	if f.Probe == execProbeName {
		// The program's own timeout, which kills it, comes first.
		limit += execProbeMargin
	}
	pctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err := p.Probe(pctx, plugin.Target{Address: inst.HostPort(), Node: node, Service: inst.Service})
	if err != nil {
		if pctx.Err() != nil {
			return Critical, fmt.Sprintf("critical: probe %s on %s gave no verdict within %s\n", f.Probe, inst.HostPort(), timeout)
		}
		return Critical, oneLine(fmt.Sprintf("critical: probe %s on %s failed: %v", f.Probe, inst.HostPort(), err)) + "\n"
	}
	st := res.Status
	switch st {
	case Passing, Warning, Critical:
	default:
		st = Critical
	}
	out := fmt.Sprintf("%s: %s %s", st, f.Probe, strings.TrimSpace(res.Output))
	return st, out + "\n"
}

// FunctionalNotes is the layer 4 check's Notes.
func FunctionalNotes(f *FunctionalConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fleetplan device agent, layer 4: probe %s", f.Probe)
	if f.Command != "" {
		fmt.Fprintf(&b, " running command %s of the agent's allow-list", f.Command)
		if len(f.Args) > 0 {
			fmt.Fprintf(&b, " with args %q", f.Args)
		}
	}
	if f.Path != "" {
		fmt.Fprintf(&b, " on %s", f.Path)
	}
	if f.Input != "" {
		fmt.Fprintf(&b, " with input %s", f.Input)
	}
	if len(f.Expect) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(f.Expect)) {
			kv = append(kv, k+" = "+f.Expect[k])
		}
		fmt.Fprintf(&b, "; expects %s", strings.Join(kv, ", "))
	}
	if f.MaxLatency > 0 {
		fmt.Fprintf(&b, "; answers slower than max_latency %s fail", f.MaxLatency)
	}
	b.WriteString(".")
	return b.String()
}
