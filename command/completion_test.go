package command

import (
	"strings"
	"testing"
)

func TestCompletionScripts(t *testing.T) {
	for shell, want := range map[string]string{
		"bash": "complete -o bashdefault -o default -o nospace -F _fleetplan_bash_autocomplete fleetplan",
		"zsh":  "compdef _fleetplan_zsh_autocomplete fleetplan",
		"fish": "complete -c fleetplan",
	} {
		stdout, stderr, code := runCLI(t, "", "completion", shell)
		if code != ExitOK || !strings.Contains(stdout, want) {
			t.Errorf("completion %s: exit %d, no %q\n%s%s", shell, code, want, stdout, stderr)
		}
	}
	if _, _, code := runCLI(t, "", "completion", "tcsh"); code != ExitUsage {
		t.Errorf("completion tcsh: exit %d, want %d", code, ExitUsage)
	}
}

// The man page documents every command and the connection flags.
func TestManPage(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "man")
	if code != ExitOK || !strings.HasPrefix(stdout, ".nh\n.TH fleetplan 1") {
		t.Fatalf("man: exit %d\n%.200s%s", code, stdout, stderr)
	}
	for _, want := range []string{"apply", "catch-up", "registry", "consul-address", "NOMAD_ADDR"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("the man page does not mention %s", want)
		}
	}
}
