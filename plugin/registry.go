package plugin

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// BuiltinVersion is the version the built-in plugins report.
const BuiltinVersion = "0.1.0"

var builtinProbes = map[string]func() Probe{
	"http-json": func() Probe { return newHTTPJSONProbe() },
	"tcp":       func() Probe { return newTCPProbe() },
	"exec":      func() Probe { return newExecProbe() },
}

// UnknownPluginError is returned by NewProbe for a name that is not a
// built-in.
type UnknownPluginError struct {
	Type       string   // TypeProbe
	Name       string   // the name asked for
	Suggestion string   // a near miss among Known, or ""
	Known      []string // the known names, sorted
}

func (e *UnknownPluginError) Error() string {
	var b strings.Builder
	if e.Name == "" {
		fmt.Fprintf(&b, "no %s name given", e.Type)
	} else {
		fmt.Fprintf(&b, "unknown %s %q", e.Type, e.Name)
	}
	if e.Suggestion != "" {
		fmt.Fprintf(&b, "; did you mean %q?", e.Suggestion)
	}
	fmt.Fprintf(&b, "; known %ss: %s", e.Type, strings.Join(e.Known, ", "))
	return b.String()
}

// NewProbe returns a new instance of the built-in probe called name, with
// its defaults; call SetConfig before Probe.
func NewProbe(name string) (Probe, error) {
	if f, ok := builtinProbes[name]; ok {
		return f(), nil
	}
	return nil, unknown(TypeProbe, name, builtinProbes)
}

func unknown[T any](typ, name string, m map[string]T) error {
	known := slices.Sorted(maps.Keys(m))
	return &UnknownPluginError{Type: typ, Name: name, Suggestion: suggest(name, known), Known: known}
}

// Probes describes the built-in probes, sorted by name.
func Probes() []Info { return infos(builtinProbes) }

func infos[T Base](m map[string]func() T) []Info {
	var out []Info
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[name]().PluginInfo())
	}
	return out
}

// errNotConfigured is returned by a plugin whose required attributes were
// never set.
var errNotConfigured = errors.New("not configured: call SetConfig first")

// ProbeNames lists the names of the built-in probes, sorted: the values a
// policy's functional block may give as probe.
func ProbeNames() []string { return slices.Sorted(maps.Keys(builtinProbes)) }

// ProbeSchema returns the configuration schema of the built-in probe called
// name (an *UnknownPluginError for any other name), so that the policy
// decoder can tell which attributes apply to which probe.
func ProbeSchema(name string) ([]Field, error) {
	p, err := NewProbe(name)
	if err != nil {
		return nil, err
	}
	return p.ConfigSchema(), nil
}
