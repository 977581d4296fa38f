package plugin

import (
	"errors"
	"reflect"
	"testing"
)

func TestRegistry(t *testing.T) {
	want := []Info{
		{Name: "exec", Type: TypeProbe, Version: BuiltinVersion},
		{Name: "http-json", Type: TypeProbe, Version: BuiltinVersion},
		{Name: "tcp", Type: TypeProbe, Version: BuiltinVersion},
	}
	if got := Probes(); !reflect.DeepEqual(got, want) {
		t.Errorf("Probes() = %v, want %v", got, want)
	}
	for _, info := range Probes() {
		p, err := NewProbe(info.Name)
		if err != nil || p.PluginInfo() != info {
			t.Errorf("NewProbe(%q) = %v, %v", info.Name, p, err)
		}
	}
	// Each call makes a new instance: two probes never share a config.
	a, _ := NewProbe("tcp")
	b, _ := NewProbe("tcp")
	if a == b {
		t.Error("NewProbe returned the same instance twice")
	}
}

func TestRegistryUnknown(t *testing.T) {
	tests := []struct {
		name string
		msg  string
	}{
		{"http_json", `unknown probe "http_json"; did you mean "http-json"?; known probes: exec, http-json, tcp`},
		{"grpc", `unknown probe "grpc"; known probes: exec, http-json, tcp`},
		{"", `no probe name given; known probes: exec, http-json, tcp`},
		// The notifiers are no plugins (package notify): not probe names.
		{"webhook", `unknown probe "webhook"; known probes: exec, http-json, tcp`},
	}
	for _, tt := range tests {
		_, err := NewProbe(tt.name)
		if err == nil || err.Error() != tt.msg {
			t.Errorf("%q: err = %v, want %s", tt.name, err, tt.msg)
		}
		var ue *UnknownPluginError
		if !errors.As(err, &ue) || ue.Name != tt.name {
			t.Errorf("%q: err %v is not an *UnknownPluginError for the name", tt.name, err)
		}
	}
}
