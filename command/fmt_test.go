package command

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	unformatted = "rollout \"app\" {\n    canary {\n  percent = 2\n      soak = \"15m\"\n    }\nmax_parallel=10\n}\n"
	formatted   = "rollout \"app\" {\n  canary {\n    percent = 2\n    soak    = \"15m\"\n  }\n  max_parallel = 10\n}\n"
	brokenHCL   = "rollout \"app\" {\n  canary {\n"
)

func writeTemp(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFmtCheck(t *testing.T) {
	bad := writeTemp(t, "bad.fleet.hcl", unformatted, 0o644)
	good := writeTemp(t, "good.fleet.hcl", formatted, 0o644)

	stdout, stderr, code := runCLI(t, "", "fmt", "-check", good)
	if code != ExitOK || stdout != "" {
		t.Errorf("formatted file: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	stdout, stderr, code = runCLI(t, "", "fmt", "-check", good, bad)
	if code != ExitInvalid {
		t.Errorf("unformatted file: exit %d, want %d", code, ExitInvalid)
	}
	if stdout != bad+"\n" {
		t.Errorf("stdout %q, want the unformatted file listed", stdout)
	}
	if !strings.Contains(stderr, "1 file not formatted") {
		t.Errorf("stderr %q", stderr)
	}
	if readFile(t, bad) != unformatted {
		t.Error("-check changed the file")
	}
}

func TestFmtWrite(t *testing.T) {
	bad := writeTemp(t, "bad.fleet.hcl", unformatted, 0o600)
	stdout, stderr, code := runCLI(t, "", "fmt", "-write", bad)
	if code != ExitOK || stdout != bad+"\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := readFile(t, bad); got != formatted {
		t.Errorf("rewritten:\n%s\nwant:\n%s", got, formatted)
	}
	if info, err := os.Stat(bad); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("mode not kept: %v, %v", info.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(bad), ".*tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}

	// Now formatted: -check passes, a second -write changes nothing.
	if _, _, code := runCLI(t, "", "fmt", "-check", bad); code != ExitOK {
		t.Errorf("-check after -write: exit %d", code)
	}
	if stdout, _, code := runCLI(t, "", "fmt", "-write", bad); code != ExitOK || stdout != "" {
		t.Errorf("second -write: exit %d, stdout %q", code, stdout)
	}
}

func TestFmtCheckWrite(t *testing.T) {
	bad := writeTemp(t, "bad.fleet.hcl", unformatted, 0o644)
	_, _, code := runCLI(t, "", "fmt", "-check", "-write", bad)
	if code != ExitInvalid || readFile(t, bad) != formatted {
		t.Errorf("exit %d; file:\n%s", code, readFile(t, bad))
	}
}

func TestFmtStdout(t *testing.T) {
	bad := writeTemp(t, "bad.fleet.hcl", unformatted, 0o644)
	stdout, _, code := runCLI(t, "", "fmt", bad)
	if code != ExitOK || stdout != formatted {
		t.Errorf("exit %d, stdout:\n%s", code, stdout)
	}
	if readFile(t, bad) != unformatted {
		t.Error("printing changed the file")
	}
	stdout, _, code = runCLI(t, unformatted, "fmt", "-")
	if code != ExitOK || stdout != formatted {
		t.Errorf("stdin: exit %d, stdout:\n%s", code, stdout)
	}
}

func TestFmtErrors(t *testing.T) {
	broken := writeTemp(t, "broken.fleet.hcl", brokenHCL, 0o644)
	cases := []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"syntax error", []string{"fmt", "-write", broken}, ExitInvalid, "Unclosed configuration block"},
		{"missing file", []string{"fmt", "nope.fleet.hcl"}, ExitInvalid, "cannot read nope.fleet.hcl"},
		{"no arguments", []string{"fmt"}, ExitUsage, "give at least one policy file"},
		{"write stdin", []string{"fmt", "-write", "-"}, ExitUsage, "cannot rewrite standard input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, "", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.err) {
				t.Errorf("exit %d (want %d), stderr %q (want %q)", code, tc.code, stderr, tc.err)
			}
		})
	}
	if readFile(t, broken) != brokenHCL {
		t.Error("a file that does not parse was rewritten")
	}
}

// TestExamplesFormatted keeps the examples in canonical format.
func TestExamplesFormatted(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "fmt", "-check", "../examples")
	if code != ExitOK {
		t.Errorf("examples not formatted: %s%s", stdout, stderr)
	}
}
