package command

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// runCLI runs the CLI in-process with captured output and returns the exit
// code the way Run computes it.
func runCLI(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := App()
	app.Writer, app.ErrWriter = &out, &errOut
	app.Reader = strings.NewReader(stdin)
	err := app.Run(append([]string{"fleetplan"}, args...))
	code = ExitOK
	if err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			if msg := err.Error(); msg != "" {
				errOut.WriteString(msg + "\n")
			}
			code = ec.ExitCode()
		} else {
			errOut.WriteString("Error: " + err.Error() + "\n")
			code = ExitUsage
		}
	}
	return out.String(), errOut.String(), code
}

func TestValidateExamples(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "validate", "-no-color", "../examples")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "Success! 2 rollouts valid") || !strings.Contains(stdout, `"edgeinfer"`) || !strings.Contains(stdout, `"detector"`) {
		t.Errorf("stdout: %q", stdout)
	}
	// The demo's short soaks are warned about, and warnings keep exit 0.
	if !strings.Contains(stderr, "Warning: Short soak") || strings.Contains(stderr, "Error") {
		t.Errorf("stderr: %q", stderr)
	}
}

func TestValidateExitCodes(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		out  string // in stdout+stderr
	}{
		{"valid file", []string{"validate", "../hcl/testdata/validate/valid.fleet.hcl"}, ExitOK, "Success! 1 rollout valid"},
		{"warnings only", []string{"validate", "../hcl/testdata/validate/warnings.fleet.hcl"}, ExitOK, "with 8 warnings"},
		{"invalid file", []string{"validate", "../hcl/testdata/validate/waves.fleet.hcl"}, ExitInvalid, "Validation failed: 5 errors, 0 warnings."},
		{"one invalid among valid", []string{"validate", "../examples/edgeinfer.fleet.hcl", "../hcl/testdata/validate/big-bang.fleet.hcl"}, ExitInvalid, "Big-bang rollouts are not allowed"},
		{"missing file", []string{"validate", "nope.fleet.hcl"}, ExitInvalid, "Cannot read policy file"},
		{"folder without policies", []string{"validate", "."}, ExitInvalid, "No policy files"},
		{"no arguments", []string{"validate"}, ExitUsage, "give at least one policy file"},
		{"unknown flag", []string{"validate", "-bogus", "x.fleet.hcl"}, ExitUsage, "flag provided but not defined"},
		{"json invalid", []string{"validate", "-json", "../hcl/testdata/validate/waves.fleet.hcl"}, ExitInvalid, `"valid": false`},
		{"json valid", []string{"validate", "-json", "../examples/detector.fleet.hcl"}, ExitOK, `"valid": true`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, "", tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tc.code, stdout, stderr)
			}
			if !strings.Contains(stdout+stderr, tc.out) {
				t.Errorf("output lacks %q:\n%s%s", tc.out, stdout, stderr)
			}
		})
	}
}

// TestRunExitCode checks the real entry point maps a usage error to 2.
func TestRunExitCode(t *testing.T) {
	if code := Run([]string{"fleetplan", "validate"}); code != ExitUsage {
		t.Errorf("Run(validate) = %d, want %d", code, ExitUsage)
	}
	if code := Run([]string{"fleetplan", "validate", "-json", "../hcl/testdata/validate/valid.fleet.hcl"}); code != ExitOK {
		t.Errorf("Run(validate valid) = %d, want %d", code, ExitOK)
	}
}

// TestValidateJSON checks the -json document: exactly one JSON object with
// the documented fields, nothing on stderr.
func TestValidateJSON(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "validate", "-json", "../hcl/testdata/validate/values.fleet.hcl", "../hcl/testdata/validate/warnings.fleet.hcl")
	if code != ExitInvalid || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	dec := json.NewDecoder(strings.NewReader(stdout))
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	if dec.More() {
		t.Error("more than one JSON value printed")
	}
	if len(doc) != 2 || doc["valid"] != false {
		t.Fatalf("document: %v", doc)
	}
	diags, ok := doc["diagnostics"].([]any)
	if !ok || len(diags) == 0 {
		t.Fatalf("diagnostics: %v", doc["diagnostics"])
	}
	var sev = map[string]int{}
	for _, d := range diags {
		m := d.(map[string]any)
		for _, k := range []string{"severity", "summary", "detail", "range"} {
			if _, ok := m[k]; !ok {
				t.Errorf("diagnostic without %q: %v", k, m)
			}
		}
		sev[m["severity"].(string)]++
		r := m["range"].(map[string]any)
		start := r["start"].(map[string]any)
		end := r["end"].(map[string]any)
		if r["filename"] == "" || start["line"].(float64) < 1 || start["column"].(float64) < 1 || end["line"].(float64) < start["line"].(float64) {
			t.Errorf("range %v", r)
		}
	}
	if sev["error"] == 0 || sev["warning"] == 0 || len(sev) != 2 {
		t.Errorf("severities %v", sev)
	}

	// A valid run has an empty list, not null.
	stdout, _, _ = runCLI(t, "", "validate", "-json", "../hcl/testdata/validate/valid.fleet.hcl")
	if !strings.Contains(stdout, `"diagnostics": []`) {
		t.Errorf("valid: %s", stdout)
	}
}

// TestValidateGolden checks that the command prints exactly the golden
// diagnostics of the hcl package (hcl/testdata/validate, regenerated with
// go test ./hcl/ -update), from the same folder so that file names match.
func TestValidateGolden(t *testing.T) {
	t.Chdir("../hcl")
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"valid":     {"valid.fleet.hcl"},
		"warnings":  {"warnings.fleet.hcl"},
		"structure": {"structure.fleet.hcl"},
		"values":    {"values.fleet.hcl"},
		"big-bang":  {"big-bang.fleet.hcl"},
		"waves":     {"waves.fleet.hcl"},
		"syntax":    {"syntax.fleet.hcl"},
		"duplicate": {"valid.fleet.hcl", "duplicate.fleet.hcl"},
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			args := []string{"validate", "-no-color"}
			for _, f := range files {
				args = append(args, filepath.Join("testdata", "validate", f))
			}
			want, err := os.ReadFile(filepath.Join("testdata", "validate", name+".txt"))
			if err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := runCLI(t, "", args...)
			wantCode := ExitOK
			if bytes.Contains(want, []byte("Error: ")) {
				wantCode = ExitInvalid
			}
			if code != wantCode {
				t.Errorf("exit %d, want %d", code, wantCode)
			}
			// stderr is the diagnostics, then the exit message on failure.
			got := strings.ReplaceAll(stderr, abs, "$TESTDATA")
			if code == ExitInvalid {
				i := strings.LastIndex(got, "Validation failed:")
				if i < 0 {
					t.Fatalf("no failure line in %q", got)
				}
				got = got[:i]
			} else if !strings.HasPrefix(stdout, "Success!") {
				t.Errorf("stdout %q", stdout)
			}
			if got != string(want) {
				t.Errorf("output differs from %s.txt:\n--- got\n%s\n--- want\n%s", name, got, want)
			}
		})
	}
}
