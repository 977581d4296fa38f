package plugin

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSetConfigValidation(t *testing.T) {
	tests := []struct {
		plugin string
		config map[string]string
		attrs  []string // the attributes the errors name, in order
		want   []string // substrings of the error text
	}{
		{"http-json", map[string]string{"timout": "5s"}, []string{"timout"}, []string{
			`http-json: unknown attribute "timout" (did you mean "timeout"?); valid attributes: expect, headers, input, max_latency, method, path, timeout`}},
		{"http-json", map[string]string{"colour": "red"}, []string{"colour"}, []string{`unknown attribute "colour"; valid attributes: `}},
		{"http-json", map[string]string{"timeout": "5 s"}, []string{"timeout"}, []string{`attribute "timeout" = "5 s": not a duration`}},
		{"http-json", map[string]string{"max_latency": "250"}, []string{"max_latency"}, []string{`attribute "max_latency" = "250": not a duration`}},
		{"http-json", map[string]string{"max_latency": "-1s"}, []string{"max_latency"}, []string{`"-1s": must be a positive duration`}},
		{"http-json", map[string]string{"headers": `{"X-Key": `}, []string{"headers"}, []string{`attribute "headers" = "{\"X-Key\": ": not a JSON object`}},
		{"http-json", map[string]string{"headers": `["a"]`}, []string{"headers"}, []string{`not a JSON object`}},
		{"http-json", map[string]string{"headers": `{"Bad Name": "x"}`}, []string{"headers"}, []string{`"Bad Name" is not a valid header name`}},
		{"http-json", map[string]string{"expect": `{"label": {"name": "cat"}}`}, []string{"expect"}, []string{`the value of "label" must be a string, number or bool`}},
		{"http-json", map[string]string{"expect": `{"label": "cat"} {}`}, []string{"expect"}, []string{`text after the JSON value`}},
		{"http-json", map[string]string{"input": `{image: cat.jpg}`}, []string{"input"}, []string{`attribute "input" = "{image: cat.jpg}": not valid JSON`}},
		{"http-json", map[string]string{"path": "infer"}, []string{"path"}, []string{`attribute "path" = "infer": must start with "/"`}},
		{"http-json", map[string]string{"method": "FETCH"}, []string{"method"}, []string{`"FETCH": not one of DELETE, GET, PATCH, POST, PUT`}},
		{"http-json", map[string]string{"timeout": "x", "path": "y", "bogus": "z"}, []string{"bogus", "path", "timeout"}, nil},
		{"tcp", map[string]string{"timeout": "soon"}, []string{"timeout"}, []string{`tcp: attribute "timeout" = "soon": not a duration`}},
		{"tcp", map[string]string{"port": "80"}, []string{"port"}, []string{`unknown attribute "port"; valid attributes: timeout`}},
		{"exec", map[string]string{}, []string{"command"}, []string{`exec: missing required attribute "command"`}},
		{"exec", map[string]string{"command": "  "}, []string{"command"}, []string{`attribute "command" = "  ": must not be empty`}},
		{"exec", map[string]string{"command": "/bin/true", "args": `"-v"`}, []string{"args"}, []string{`attribute "args" = "\"-v\"": not a JSON list`}},
		{"exec", map[string]string{"command": "/bin/true", "args": `["-v", ["x"]]`}, []string{"args"}, []string{`element 1 must be a string`}},
		{"exec", map[string]string{"comand": "/bin/true"}, []string{"comand", "command"}, []string{`did you mean "command"?`, `missing required attribute "command"`}},
	}
	for _, tt := range tests {
		t.Run(tt.plugin+"/"+strings.Join(tt.attrs, ","), func(t *testing.T) {
			p := newProbe(t, tt.plugin)
			err := p.SetConfig(context.Background(), tt.config)
			if err == nil {
				t.Fatalf("SetConfig(%v) = nil, want an error", tt.config)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			var attrs []string
			for _, e := range ConfigErrors(err) {
				attrs = append(attrs, e.Attribute)
				if e.Plugin != tt.plugin {
					t.Errorf("Plugin = %q, want %q", e.Plugin, tt.plugin)
				}
				if e.Value != tt.config[e.Attribute] {
					t.Errorf("Value = %q, want %q", e.Value, tt.config[e.Attribute])
				}
			}
			if !slices.Equal(attrs, tt.attrs) {
				t.Errorf("errors name %v, want %v; error:\n%v", attrs, tt.attrs, err)
			}
			wantContains(t, "error", err.Error(), tt.want...)
		})
	}
}

func TestSetConfigValid(t *testing.T) {
	tests := []struct {
		plugin string
		config map[string]string
	}{
		{"http-json", nil},
		{"http-json", map[string]string{
			"path": "/infer", "method": "post", "input": `{"image":"cat.jpg"}`, "expect": `{"label":"cat","n":3}`,
			"max_latency": "250ms", "timeout": "2s", "headers": `{"X-Key":"k"}`,
		}},
		{"tcp", nil},
		{"tcp", map[string]string{"timeout": "1s"}},
		{"exec", map[string]string{"command": "check-model", "args": `["--fast", 3]`, "timeout": "10s"}},
	}
	for _, tt := range tests {
		t.Run(tt.plugin, func(t *testing.T) {
			configure(t, newProbe(t, tt.plugin), tt.config)
		})
	}
}

// A rejected configuration leaves the previous one in place; a new one
// replaces it entirely (attributes left out go back to their defaults).
func TestSetConfigReplaces(t *testing.T) {
	p := newHTTPJSONProbe()
	configure(t, p, map[string]string{"path": "/a", "timeout": "1s", "max_latency": "100ms"})
	if err := p.SetConfig(context.Background(), map[string]string{"path": "b"}); err == nil {
		t.Fatal("bad path accepted")
	}
	if c := p.cfg.Load(); c.path != "/a" || c.timeout.String() != "1s" {
		t.Errorf("after a rejected SetConfig: path %q, timeout %s; want the previous config", c.path, c.timeout)
	}
	configure(t, p, map[string]string{"path": "/b"})
	if c := p.cfg.Load(); c.path != "/b" || c.timeout.String() != "5s" || c.maxLatency != 0 || c.method != "POST" {
		t.Errorf("after SetConfig: %+v, want path /b and defaults", c)
	}
}

func TestSchemaTypes(t *testing.T) {
	valid := []string{FieldString, FieldNumber, FieldBool, FieldDuration, FieldStringMap, FieldStringList}
	for _, info := range Probes() {
		for _, f := range newProbe(t, info.Name).ConfigSchema() {
			if !slices.Contains(valid, f.Type) || f.Description == "" {
				t.Errorf("%s: field %+v: type must be one of %v and a description given", info.Name, f, valid)
			}
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"exec", "http-json", "tcp"}
	for name, want := range map[string]string{
		"http_json": "http-json", "HTTP-JSON": "http-json", "htpp-json": "http-json", "http": "http-json",
		"tpc": "tcp", "exce": "exec", "grpc": "", "x": "", "": "",
	} {
		if got := suggest(name, known); got != want {
			t.Errorf("suggest(%q) = %q, want %q", name, got, want)
		}
	}
}

func newProbe(t *testing.T, name string) Probe {
	t.Helper()
	p, err := NewProbe(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
