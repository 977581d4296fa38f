package command

import (
	"strings"
	"testing"
)

// Unknown commands and subcommands are usage errors.
func TestUnknownCommandsAreUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"nosuch"}, {"registry", "nosuch"}, {"agent", "nosuch"}} {
		_, stderr, code := runCLI(t, "", args...)
		if code != ExitUsage || !strings.Contains(stderr, "nosuch") {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	// Without arguments, the help.
	for _, args := range [][]string{{}, {"registry"}} {
		stdout, _, code := runCLI(t, "", args...)
		if code != ExitOK || !strings.Contains(stdout, "USAGE") {
			t.Errorf("%v: exit %d\n%s", args, code, stdout)
		}
	}
}

// The rollout commands check their arguments before they connect.
func TestRolloutCommandsTakeOneRollout(t *testing.T) {
	for _, args := range [][]string{{"approve"}, {"pause", "a", "b"}, {"resume"}, {"rollback"}, {"catch-up"}, {"report"}, {"approve", "a", "-bogus"}, {"apply"}, {"audit", "extra"}} {
		_, stderr, code := runCLI(t, "", args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
	if _, stderr, _ := runCLI(t, "", "approve"); !strings.Contains(stderr, "approve takes exactly one ROLLOUT name") {
		t.Errorf("usage message: %s", stderr)
	}
	if _, stderr, _ := runCLI(t, "", "registry", "show"); !strings.Contains(stderr, "registry show takes exactly one") {
		t.Errorf("usage message: %s", stderr)
	}
}
