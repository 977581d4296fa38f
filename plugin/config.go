package plugin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/agext/levenshtein"
)

// Field types a ConfigSchema may use (Field.Type).
const (
	FieldString     = "string"
	FieldNumber     = "number"
	FieldBool       = "bool"
	FieldDuration   = "duration"
	FieldStringMap  = "map(string)"
	FieldStringList = "list(string)"
)

// ConfigError is one problem with a plugin's configuration. SetConfig
// returns one, or several joined with errors.Join; errors.As finds the
// first, ConfigErrors lists them all. Attribute lets the policy decoder
// point at the attribute's file:line.
type ConfigError struct {
	Plugin    string // plugin name, e.g. "http-json"
	Attribute string // the attribute concerned
	Value     string // the value as written; empty when missing
	Message   string // what is wrong, naming the attribute
}

func (e *ConfigError) Error() string { return e.Plugin + ": " + e.Message }

// ConfigErrors returns every *ConfigError in err (from SetConfig).
func ConfigErrors(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *ConfigError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}

// configValues are the attributes of a configuration that passed the
// schema's type checks, converted: string, float64, bool, time.Duration,
// map[string]string or []string according to Field.Type.
type configValues map[string]any

func (v configValues) str(name, def string) string {
	if s, ok := v[name].(string); ok {
		return s
	}
	return def
}

func (v configValues) duration(name string, def time.Duration) time.Duration {
	if d, ok := v[name].(time.Duration); ok {
		return d
	}
	return def
}

func (v configValues) stringMap(name string) map[string]string {
	m, _ := v[name].(map[string]string)
	return m
}

func (v configValues) list(name string) []string {
	l, _ := v[name].([]string)
	return l
}

// configParser checks a configuration against a schema and collects every
// problem rather than stopping at the first.
type configParser struct {
	plugin string
	schema []Field
	errs   []*ConfigError
}

// parseConfig checks raw against schema: unknown attributes, missing
// required ones, and values that do not parse as their Field.Type.
func parseConfig(plugin string, schema []Field, raw map[string]string) (configValues, *configParser) {
	p := &configParser{plugin: plugin, schema: schema}
	byName := make(map[string]Field, len(schema))
	var names []string
	for _, f := range schema {
		byName[f.Name] = f
		names = append(names, f.Name)
	}
	slices.Sort(names)

	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, ok := byName[k]; ok {
			continue
		}
		msg := fmt.Sprintf("unknown attribute %q", k)
		if s := suggest(k, names); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		if len(names) == 0 {
			msg += "; this plugin takes no attributes"
		} else {
			msg += "; valid attributes: " + strings.Join(names, ", ")
		}
		p.add(k, raw[k], msg)
	}

	vals := configValues{}
	for _, f := range schema {
		s, ok := raw[f.Name]
		if !ok {
			if f.Required {
				p.add(f.Name, "", fmt.Sprintf("missing required attribute %q (%s)", f.Name, f.Description))
			}
			continue
		}
		if v, ok := p.convert(f, s); ok {
			vals[f.Name] = v
		}
	}
	return vals, p
}

func (p *configParser) add(attr, value, msg string) {
	p.errs = append(p.errs, &ConfigError{Plugin: p.plugin, Attribute: attr, Value: value, Message: msg})
}

// addf reports a problem with an attribute's value, naming both.
func (p *configParser) addf(attr, value, format string, args ...any) {
	p.add(attr, value, fmt.Sprintf("attribute %q = %s: ", attr, quoteSnippet(value))+fmt.Sprintf(format, args...))
}

// err returns the collected problems, ordered by attribute, or nil.
func (p *configParser) err() error {
	slices.SortStableFunc(p.errs, func(a, b *ConfigError) int {
		return strings.Compare(a.Attribute, b.Attribute)
	})
	switch len(p.errs) {
	case 0:
		return nil
	case 1:
		return p.errs[0]
	}
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (p *configParser) convert(f Field, s string) (any, bool) {
	switch f.Type {
	case FieldString:
		if f.Required && strings.TrimSpace(s) == "" {
			p.addf(f.Name, s, "must not be empty")
			return nil, false
		}
		return s, true
	case FieldDuration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			p.addf(f.Name, s, "not a duration; write it like \"250ms\", \"5s\" or \"1m\"")
			return nil, false
		}
		if d <= 0 {
			p.addf(f.Name, s, "must be a positive duration")
			return nil, false
		}
		return d, true
	case FieldNumber:
		n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			p.addf(f.Name, s, "not a number")
			return nil, false
		}
		return n, true
	case FieldBool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			p.addf(f.Name, s, "not a bool; write true or false")
			return nil, false
		}
		return b, true
	case FieldStringMap:
		var m map[string]json.RawMessage
		if err := unmarshalStrict(s, &m); err != nil || m == nil {
			p.addf(f.Name, s, "not a JSON object%s; write it like {\"key\": \"value\"}", jsonReason(err))
			return nil, false
		}
		out := make(map[string]string, len(m))
		for k, raw := range m {
			v, ok := scalarText(raw)
			if !ok {
				p.addf(f.Name, s, "the value of %q must be a string, number or bool, not %s", k, snippet(string(raw), 40))
				return nil, false
			}
			out[k] = v
		}
		return out, true
	case FieldStringList:
		var l []json.RawMessage
		if err := unmarshalStrict(s, &l); err != nil || l == nil {
			p.addf(f.Name, s, "not a JSON list%s; write it like [\"-v\", \"x\"]", jsonReason(err))
			return nil, false
		}
		out := make([]string, len(l))
		for i, raw := range l {
			v, ok := scalarText(raw)
			if !ok {
				p.addf(f.Name, s, "element %d must be a string, number or bool, not %s", i, snippet(string(raw), 40))
				return nil, false
			}
			out[i] = v
		}
		return out, true
	}
	// A schema bug, not a user error; still reported, never a panic.
	p.addf(f.Name, s, "the plugin declares unsupported type %q", f.Type)
	return nil, false
}

// unmarshalStrict decodes exactly one JSON value from s.
func unmarshalStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("text after the JSON value")
	}
	return nil
}

func jsonReason(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}

// scalarText is the text of a JSON string, number or bool: a string
// unquoted, a number or bool as written.
func scalarText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false
		}
		return s, true
	case '{', '[', 'n':
		return "", false
	}
	return string(raw), true
}

// suggest returns the known name closest to name when it is close enough
// to be a typo, or "".
func suggest(name string, known []string) string {
	n := strings.ToLower(name)
	best, bestD := "", -1
	for _, k := range known {
		kl := strings.ToLower(k)
		d := typoDistance(n, kl)
		limit := max(1, len(n)/3)
		if d > limit && !(len(n) >= 3 && strings.HasPrefix(kl, n)) {
			continue
		}
		if bestD < 0 || d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// typoDistance is the Levenshtein distance, with the swap of two adjacent
// letters ("tpc" for "tcp") counted as one typo rather than two edits.
func typoDistance(a, b string) int {
	d := levenshtein.Distance(a, b, nil)
	if d == 2 && len(a) == len(b) {
		for i := 0; i+1 < len(a); i++ {
			if a[i] != b[i] {
				if a[i] == b[i+1] && a[i+1] == b[i] && a[i+2:] == b[i+2:] {
					return 1
				}
				break
			}
		}
	}
	return d
}
