package agent

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/plugin"
)

// The exec probe (invariant I10): a policy's functional block names a
// command (plugin.ValidExecCommandName) and its args; the name travels
// through Consul KV, and this agent maps it to a program of its own local
// allow-list (-exec-allow NAME=/path[,timeout]). A program or command line
// taken from KV is never run: a name missing from the list is a critical
// check that says how to allow it.

// execProbeName is the exec probe plugin's name.
const execProbeName = "exec"

// DefaultExecTimeout bounds an allow-list entry's program when the entry
// gives no timeout.
const DefaultExecTimeout = 10 * time.Second

// ExecEntry is one program of the agent's allow-list.
type ExecEntry struct {
	// Path is the program, an absolute path (no shell, no PATH lookup).
	Path string
	// Timeout kills the program and fails the check (DefaultExecTimeout).
	Timeout time.Duration
}

// ExecAllowList maps the command names a policy may use to programs.
type ExecAllowList map[string]ExecEntry

// ParseExecAllow reads -exec-allow entries, "NAME=/path/to/prog" or
// "NAME=/path/to/prog,30s". When checkPath is set the path must be
// absolute (the agent on the device); `agent install` passes false, since
// its paths may hold Nomad interpolations such as ${meta.edge.bin_dir}.
func ParseExecAllow(entries []string, checkPath bool) (ExecAllowList, error) {
	out := ExecAllowList{}
	for _, e := range entries {
		name, rest, ok := strings.Cut(strings.TrimSpace(e), "=")
		if !ok || rest == "" {
			return nil, fmt.Errorf("exec allow-list entry %q: want NAME=/path/to/program[,timeout]", e)
		}
		if !plugin.ValidExecCommandName(name) {
			return nil, fmt.Errorf("exec allow-list entry %q: the name %q must be 1 to %d letters, digits, \".\", \"_\" or \"-\"", e, name, plugin.MaxExecCommandNameLen)
		}
		path, tmo, hasTimeout := strings.Cut(rest, ",")
		entry := ExecEntry{Path: path, Timeout: DefaultExecTimeout}
		if hasTimeout {
			d, err := time.ParseDuration(strings.TrimSpace(tmo))
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("exec allow-list entry %q: timeout %q is not a positive duration such as 10s", e, tmo)
			}
			entry.Timeout = d
		}
		if path == "" || (checkPath && !filepath.IsAbs(path)) {
			return nil, fmt.Errorf("exec allow-list entry %q: the program must be an absolute path", e)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("exec allow-list entry %q: %s is already in the list", e, name)
		}
		out[name] = entry
	}
	return out, nil
}

// Names lists the allowed command names, sorted.
func (l ExecAllowList) Names() []string { return slices.Sorted(maps.Keys(l)) }

// lookup returns the entry of an exec block's command, or the error the
// check shows.
func (l ExecAllowList) lookup(f *FunctionalConfig) (ExecEntry, error) {
	if f.Command == "" {
		return ExecEntry{}, fmt.Errorf("the exec probe names no command")
	}
	e, ok := l[f.Command]
	if !ok {
		known := "it allows none"
		if len(l) > 0 {
			known = "it allows " + strings.Join(l.Names(), ", ")
		}
		return ExecEntry{}, fmt.Errorf("command %s is not in this agent's allow-list (set -exec-allow %s=/path; %s)", f.Command, f.Command, known)
	}
	return e, nil
}

// timeout is how long one functional probe may take: for exec, the
// allow-list entry's timeout (the shortest probe time when the command is
// not allowed), else probeTimeout.
func (l ExecAllowList) timeout(f *FunctionalConfig) time.Duration {
	if f.Probe != execProbeName {
		return probeTimeout(f)
	}
	if e, err := l.lookup(f); err == nil {
		return e.Timeout
	}
	return minProbeTimeout
}

// checkTimeout is the Consul timeout of the layer 4 check: the probe's
// time and a second for the answer.
func (l ExecAllowList) checkTimeout(f *FunctionalConfig) time.Duration {
	return l.timeout(f) + time.Second
}

// execPluginConfig is the exec plugin's configuration of an allowed
// command: the program of the allow-list, the policy's args.
func (l ExecAllowList) execPluginConfig(f *FunctionalConfig) (map[string]string, error) {
	e, err := l.lookup(f)
	if err != nil {
		return nil, err
	}
	cfg := map[string]string{"command": e.Path, "timeout": e.Timeout.String()}
	if len(f.Args) > 0 {
		b, err := json.Marshal(f.Args)
		if err != nil {
			return nil, err
		}
		cfg["args"] = string(b)
	}
	return cfg, nil
}
