package jobs

import (
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// selectorConstraints translates the fleet selector (a Nomad node filter
// expression) into job constraints where it can: a conjunction (`and`) of
// equality tests
//
//	Meta.k == "v"   Meta["k"] == "v"   NodeClass == "x"   Datacenter == "x"
//
// Terms of any other form in such a conjunction are left out, and an
// expression using `or`, `not` or parentheses gives no constraint at all (a
// part of a disjunction does not narrow it). Leaving a term out is safe: the
// constraints only ever keep a job off more nodes, never fewer, and the
// selector itself is enforced by the controller, which only sets the slot
// metadata on devices the selector matched (the slot constraint keeps every
// other node out). The translated constraints are defence in depth, and they
// make the compiled job say which devices it is for.
func selectorConstraints(selector string) []*api.Constraint {
	toks, ok := lex(selector)
	if !ok {
		return nil
	}
	var out []*api.Constraint
	var term []token
	flush := func() {
		if c := termConstraint(term); c != nil {
			out = append(out, c)
		}
		term = term[:0]
	}
	for _, t := range toks {
		if t.kind == tokIdent {
			switch strings.ToLower(t.text) {
			case "or", "not":
				return nil
			case "and":
				flush()
				continue
			}
		}
		if t.kind == tokPunct && (t.text == "(" || t.text == ")") {
			return nil
		}
		term = append(term, t)
	}
	flush()
	return out
}

// termConstraint translates one equality test, or returns nil.
func termConstraint(t []token) *api.Constraint {
	is := func(i int, kind tokKind, text string) bool {
		return i < len(t) && t[i].kind == kind && (text == "" || t[i].text == text)
	}
	eq := func(i int) bool { return len(t) == i+2 && is(i, tokPunct, "==") && is(i+1, tokString, "") }
	switch {
	case is(0, tokIdent, "Meta") && is(1, tokPunct, ".") && is(2, tokIdent, "") && eq(3):
		return api.NewConstraint("${meta."+t[2].text+"}", "=", t[4].text)
	case is(0, tokIdent, "Meta") && is(1, tokPunct, "[") && is(2, tokString, "") && is(3, tokPunct, "]") && eq(4):
		return api.NewConstraint("${meta."+t[2].text+"}", "=", t[5].text)
	case is(0, tokIdent, "NodeClass") && eq(1):
		return api.NewConstraint(attrNodeClass, "=", t[2].text)
	case is(0, tokIdent, "Datacenter") && eq(1):
		return api.NewConstraint(attrDatacenter, "=", t[2].text)
	}
	return nil
}

type tokKind int

const (
	tokIdent tokKind = iota
	tokString
	tokPunct
)

type token struct {
	kind tokKind
	text string // unquoted for strings
}

// lex splits a filter expression into identifiers, strings and punctuation.
// It reports false on anything it does not understand, and the expression is
// then not translated at all.
func lex(s string) ([]token, bool) {
	var out []token
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != byte(c) {
				if c == '"' && s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, false
			}
			text := s[i+1 : j]
			if c == '"' {
				u, err := strconv.Unquote(s[i : j+1])
				if err != nil {
					return nil, false
				}
				text = u
			}
			out = append(out, token{tokString, text})
			i = j + 1
		case isIdentStart(s[i]):
			j := i
			for j < len(s) && (isIdentStart(s[j]) || s[j] == '-' || '0' <= s[j] && s[j] <= '9') {
				j++
			}
			out = append(out, token{tokIdent, s[i:j]})
			i = j
		case strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!="):
			out = append(out, token{tokPunct, s[i : i+2]})
			i += 2
		case strings.ContainsRune(".[]()", c):
			out = append(out, token{tokPunct, string(c)})
			i++
		default:
			return nil, false
		}
	}
	return out, true
}

func isIdentStart(b byte) bool {
	return b == '_' || 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z'
}
