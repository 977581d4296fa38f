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
	want = []Info{
		{Name: "log", Type: TypeNotifier, Version: BuiltinVersion},
		{Name: "webhook", Type: TypeNotifier, Version: BuiltinVersion},
	}
	if got := Notifiers(); !reflect.DeepEqual(got, want) {
		t.Errorf("Notifiers() = %v, want %v", got, want)
	}
	for _, info := range Probes() {
		p, err := NewProbe(info.Name)
		if err != nil || p.PluginInfo() != info {
			t.Errorf("NewProbe(%q) = %v, %v", info.Name, p, err)
		}
	}
	for _, info := range Notifiers() {
		n, err := NewNotifier(info.Name)
		if err != nil || n.PluginInfo() != info {
			t.Errorf("NewNotifier(%q) = %v, %v", info.Name, n, err)
		}
	}
	// Each call makes a new instance: two probes never share a config.
	a, _ := NewProbe("tcp")
	b, _ := NewProbe("tcp")
	if a == b {
		t.Error("NewProbe returned the same instance twice")
	}
	if _, ok := any(a).(LoggerSetter); ok {
		t.Error("tcp probe claims to log")
	}
	for _, name := range []string{"log", "webhook"} {
		n, _ := NewNotifier(name)
		if _, ok := n.(LoggerSetter); !ok {
			t.Errorf("%s notifier does not implement LoggerSetter", name)
		}
	}
}

func TestRegistryUnknown(t *testing.T) {
	tests := []struct {
		probe bool
		name  string
		msg   string
	}{
		{true, "http_json", `unknown probe "http_json"; did you mean "http-json"?; known probes: exec, http-json, tcp`},
		{true, "grpc", `unknown probe "grpc"; known probes: exec, http-json, tcp`},
		{true, "", `no probe name given; known probes: exec, http-json, tcp`},
		{false, "webhok", `unknown notifier "webhok"; did you mean "webhook"?; known notifiers: log, webhook`},
		{false, "slack", `unknown notifier "slack"; known notifiers: log, webhook`},
		{false, "http-json", `unknown notifier "http-json"; known notifiers: log, webhook`},
	}
	for _, tt := range tests {
		var err error
		if tt.probe {
			_, err = NewProbe(tt.name)
		} else {
			_, err = NewNotifier(tt.name)
		}
		if err == nil || err.Error() != tt.msg {
			t.Errorf("%q: err = %v, want %s", tt.name, err, tt.msg)
		}
		var ue *UnknownPluginError
		if !errors.As(err, &ue) || ue.Name != tt.name {
			t.Errorf("%q: err %v is not an *UnknownPluginError for the name", tt.name, err)
		}
	}
}
