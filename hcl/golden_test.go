package hcl

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// update regenerates the golden files: go test ./hcl/ -update
var update = flag.Bool("update", false, "rewrite the golden files in testdata/validate")

// GoldenCases lists the golden tests in testdata/validate: each case
// validates its files together and compares the text output of
// `fleetplan validate` (the diagnostics, as WriteDiagnostics prints them
// without color) with <case>.txt, and its -json output with <case>.json.
// Absolute paths of the testdata folder are written as $TESTDATA.
var goldenCases = []struct {
	name  string
	files []string
}{
	{"valid", []string{"valid.fleet.hcl"}},
	{"warnings", []string{"warnings.fleet.hcl"}},
	{"structure", []string{"structure.fleet.hcl"}},
	{"values", []string{"values.fleet.hcl"}},
	{"big-bang", []string{"big-bang.fleet.hcl"}},
	{"waves", []string{"waves.fleet.hcl"}},
	{"input", []string{"input.fleet.hcl"}},
	{"syntax", []string{"syntax.fleet.hcl"}},
	{"duplicate", []string{"valid.fleet.hcl", "duplicate.fleet.hcl"}},
	{"notify", []string{"notify.fleet.hcl"}},
}

const goldenDir = "testdata/validate"

// GoldenOutput renders what `fleetplan validate` prints for files, text and
// JSON, with the testdata folder's absolute path replaced by $TESTDATA. It
// is shared with the command package's tests through the golden files.
func goldenOutput(t testing.TB, files []string) (text, js []byte) {
	t.Helper()
	_, srcs, diags := ParseFilesWithSources(files...)
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, srcs, diags, false); err != nil {
		t.Fatal(err)
	}
	j, err := json.MarshalIndent(Report(diags), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return scrubPaths(t, buf.Bytes()), scrubPaths(t, append(j, '\n'))
}

// scrubPaths replaces the absolute testdata folder with $TESTDATA, so that
// golden files do not depend on where the repository is checked out.
func scrubPaths(t testing.TB, b []byte) []byte {
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte(abs), []byte("$TESTDATA"))
}

func TestGolden(t *testing.T) {
	for _, gc := range goldenCases {
		t.Run(gc.name, func(t *testing.T) {
			var files []string
			for _, f := range gc.files {
				files = append(files, filepath.Join(goldenDir, f))
			}
			text, js := goldenOutput(t, files)
			compareGolden(t, filepath.Join(goldenDir, gc.name+".txt"), text)
			compareGolden(t, filepath.Join(goldenDir, gc.name+".json"), js)

			// The text must point at lines that exist, and each error
			// must say how to fix it.
			if bytes.Contains(text, []byte("source code not available")) {
				t.Error("a diagnostic points outside the parsed files")
			}
			wantValid := !bytes.Contains(text, []byte("Error: "))
			var rep JSONReport
			if err := json.Unmarshal(js, &rep); err != nil || rep.Valid != wantValid {
				t.Errorf("json valid = %v (err %v), want %v", rep.Valid, err, wantValid)
			}
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./hcl/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./hcl/ -update to accept):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first lines where two texts differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			if shown++; shown == 5 {
				break
			}
		}
	}
	return b.String()
}
