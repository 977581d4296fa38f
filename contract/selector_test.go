package contract

import (
	"strings"
	"testing"
)

func TestParseSelector(t *testing.T) {
	labels := map[string]string{"code": "503", "handler": "/infer"}
	value := func(l string) string { return labels[l] }
	for _, c := range []struct {
		in      string
		str     string
		matches bool
		err     string
	}{
		{"http_requests_total", "http_requests_total", true, ""},
		{` http_requests_total{code=~"5.."} `, `http_requests_total{code=~"5.."}`, true, ""},
		{`http_requests_total{code=~"5"}`, `http_requests_total{code=~"5"}`, false, ""}, // anchored
		{`x{code!="503", handler="/infer"}`, `x{code!="503",handler="/infer"}`, false, ""},
		{`x{code!~"2..",missing=""}`, `x{code!~"2..",missing=""}`, true, ""},
		{`x{code="a\"b"}`, `x{code="a\"b"}`, false, ""},
		{"", "", false, "want a metric name"},
		{"1abc", "", false, "want a metric name"},
		{`x{code=~5..}`, "", false, `want label="value"`},
		{`x{code="5"`, "", false, "must end with }"},
		{`x{code="5" handler="/"}`, "", false, "separate label matchers with commas"},
		{`x{code=~"("}`, "", false, "regular expression"},
		{`x{code="5}`, "", false, "unterminated"},
	} {
		s, err := ParseSelector(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want one containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if s.String() != c.str || s.Match(value) != c.matches {
			t.Errorf("%q: %s matches %v, want %s %v", c.in, s, s.Match(value), c.str, c.matches)
		}
	}
}
