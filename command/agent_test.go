package command

import "testing"

func TestConsulAddrOf(t *testing.T) {
	for name, c := range map[string]struct {
		cfg  map[string]any
		want string
	}{
		"nomad 1.6":  {map[string]any{"Consul": map[string]any{"Addr": "127.0.0.3:8500"}}, "127.0.0.3:8500"},
		"nomad 1.7+": {map[string]any{"Consuls": []any{map[string]any{"Name": "other", "Addr": "10.0.0.1:8500"}, map[string]any{"Name": "default", "Addr": "127.0.0.1:8500"}}}, "127.0.0.1:8500"},
		"no name":    {map[string]any{"Consuls": []any{map[string]any{"Addr": "127.0.0.9:8500"}}}, "127.0.0.9:8500"},
		"none":       {map[string]any{"Client": map[string]any{}}, ""},
	} {
		if got := consulAddrOf(c.cfg); got != c.want {
			t.Errorf("%s: consulAddrOf = %q, want %q", name, got, c.want)
		}
	}
}
