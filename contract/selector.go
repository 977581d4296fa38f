package contract

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Selector picks series of one metric family: a name and label matchers
// (=, !=, =~, !~; regular expressions are anchored, as in PromQL).
type Selector struct {
	Name     string
	Matchers []LabelMatcher
}

// LabelMatcher is one label condition of a Selector.
type LabelMatcher struct {
	Label string
	Op    string // "=", "!=", "=~", "!~"
	Value string
	re    *regexp.Regexp
}

var selectorName = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// ParseSelector reads `name` or `name{label="value",other=~"regex"}`.
func ParseSelector(s string) (Selector, error) {
	s = strings.TrimSpace(s)
	name, rest, hasLabels := strings.Cut(s, "{")
	name = strings.TrimSpace(name)
	if !selectorName.MatchString(name) {
		return Selector{}, fmt.Errorf("selector %q: want a metric name (letters, digits, _ and :) optionally followed by {label=\"value\",...}", s)
	}
	sel := Selector{Name: name}
	if !hasLabels {
		return sel, nil
	}
	rest = strings.TrimSpace(rest)
	if !strings.HasSuffix(rest, "}") {
		return Selector{}, fmt.Errorf("selector %q: the label matchers must end with }", s)
	}
	rest = strings.TrimSpace(strings.TrimSuffix(rest, "}"))
	for rest != "" {
		i := strings.IndexAny(rest, "=!")
		if i <= 0 {
			return Selector{}, fmt.Errorf("selector %q: want label=\"value\", label!=\"value\", label=~\"regex\" or label!~\"regex\" at %q", s, rest)
		}
		m := LabelMatcher{Label: strings.TrimSpace(rest[:i])}
		rest = rest[i:]
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(rest, op) {
				m.Op = op
				rest = strings.TrimSpace(rest[len(op):])
				break
			}
		}
		if m.Op == "" || !selectorName.MatchString(m.Label) || !strings.HasPrefix(rest, `"`) {
			return Selector{}, fmt.Errorf("selector %q: want label=\"value\", label!=\"value\", label=~\"regex\" or label!~\"regex\"", s)
		}
		val, n, err := quotedPrefix(rest)
		if err != nil {
			return Selector{}, fmt.Errorf("selector %q: label %s: %v", s, m.Label, err)
		}
		m.Value = val
		if m.Op == "=~" || m.Op == "!~" {
			re, err := regexp.Compile("^(?:" + val + ")$")
			if err != nil {
				return Selector{}, fmt.Errorf("selector %q: label %s: regular expression %q: %v", s, m.Label, val, err)
			}
			m.re = re
		}
		sel.Matchers = append(sel.Matchers, m)
		rest = strings.TrimSpace(rest[n:])
		if rest != "" {
			if rest[0] != ',' {
				return Selector{}, fmt.Errorf("selector %q: separate label matchers with commas", s)
			}
			rest = strings.TrimSpace(rest[1:])
		}
	}
	return sel, nil
}

// quotedPrefix reads the Go-quoted string at the start of s and how many
// bytes it took.
func quotedPrefix(s string) (string, int, error) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			v, err := strconv.Unquote(s[:i+1])
			if err != nil {
				return "", 0, fmt.Errorf("bad quoted value %s", s[:i+1])
			}
			return v, i + 1, nil
		}
	}
	return "", 0, fmt.Errorf("unterminated quoted value %s", s)
}

func (s Selector) String() string {
	if len(s.Matchers) == 0 {
		return s.Name
	}
	parts := make([]string, len(s.Matchers))
	for i, m := range s.Matchers {
		parts[i] = m.Label + m.Op + strconv.Quote(m.Value)
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

// Match reports whether a series whose label values value gives ("" for
// a missing label) satisfies every matcher.
func (s Selector) Match(value func(label string) string) bool {
	for _, m := range s.Matchers {
		v := value(m.Label)
		var ok bool
		switch m.Op {
		case "=":
			ok = v == m.Value
		case "!=":
			ok = v != m.Value
		case "=~":
			ok = m.re.MatchString(v)
		case "!~":
			ok = !m.re.MatchString(v)
		}
		if !ok {
			return false
		}
	}
	return true
}
