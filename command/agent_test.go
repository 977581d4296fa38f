package command

import (
	"strings"
	"testing"
)

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

// TestAgentInstallExecAllow: `agent install -exec-allow` passes the
// allow-list entries to every agent's arguments, and refuses a bad one.
func TestAgentInstallExecAllow(t *testing.T) {
	out, errOut, code := runCLI(t, "", "agent", "install", "-print",
		"-exec-allow", "infer-selftest=${meta.edge.bin_dir}/selftest,30s", "-exec-allow", "disk=/usr/bin/diskcheck")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"-exec-allow",`, `"infer-selftest=${meta.edge.bin_dir}/selftest,30s"`, `"disk=/usr/bin/diskcheck"`} {
		if !strings.Contains(out, want) {
			t.Errorf("job args lack %s:\n%s", want, out)
		}
	}
	if _, errOut, code := runCLI(t, "", "agent", "install", "-print", "-exec-allow", "/bin/sh"); code != ExitUsage || !strings.Contains(errOut, "-exec-allow") {
		t.Errorf("bad entry: exit %d, %s", code, errOut)
	}
}

// TestAgentInstallExecAllowNotShared: the entries of one run do not leak
// into the next run of the App in the same process.
func TestAgentInstallExecAllowNotShared(t *testing.T) {
	if _, errOut, code := runCLI(t, "", "agent", "install", "-print", "-exec-allow", "a=/bin/a"); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out, errOut, code := runCLI(t, "", "agent", "install", "-print")
	if code != 0 || strings.Contains(out, "-exec-allow") {
		t.Errorf("exit %d %s; second run's job args carry the first run's -exec-allow:\n%s", code, errOut, out)
	}
}

func TestAgentInstallTokenFromVariable(t *testing.T) {
	out, errOut, code := runCLI(t, "", "agent", "install", "-print", "-token-from-variable")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`nomadVar \"nomad/jobs/fleetplan-agent\"`, `"DestPath": "secrets/fleetplan-agent.env"`, `"Envvars": true`} {
		if !strings.Contains(out, want) {
			t.Errorf("job lacks %s:\n%s", want, out)
		}
	}
	plain, _, _ := runCLI(t, "", "agent", "install", "-print")
	if strings.Contains(plain, "nomadVar") {
		t.Errorf("without -token-from-variable the job has the tokens template:\n%s", plain)
	}
	if _, errOut, code := runCLI(t, "", "agent", "install", "-print", "-consul-token-file", "/nonexistent"); code != ExitUsage || !strings.Contains(errOut, "-nomad-token-file") {
		t.Errorf("-consul-token-file alone: exit %d, %s", code, errOut)
	}
}

func TestAgentInstallArtifact(t *testing.T) {
	sum := "sha256:" + strings.Repeat("0f", 32)
	out, errOut, code := runCLI(t, "", "agent", "install", "-print", "-artifact", "http://127.0.0.1:9/fleetplan_linux_${attr.cpu.arch}", "-checksum", sum)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{`"GetterSource": "http://127.0.0.1:9/fleetplan_linux_${attr.cpu.arch}"`, `"checksum": "` + sum + `"`, `"command": "local/fleetplan"`} {
		if !strings.Contains(out, want) {
			t.Errorf("job lacks %s:\n%s", want, out)
		}
	}
	for _, bad := range [][]string{
		{"-checksum", sum},
		{"-artifact", "fleetplan_linux_amd64"},
		{"-artifact", "http://x/f", "-checksum", "sha256:zz"},
		{"-artifact", "http://x/f", "-checksum", "crc:00"},
	} {
		args := append([]string{"agent", "install", "-print"}, bad...)
		if _, errOut, code := runCLI(t, "", args...); code != ExitUsage {
			t.Errorf("%v: exit %d (%s), want %d", bad, code, errOut, ExitUsage)
		}
	}
}
