package hcl

import (
	"io"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// DiagnosticWidth is the width the text diagnostics are wrapped to.
const DiagnosticWidth = 78

// WriteDiagnostics prints diagnostics in HCL's standard text format: the
// severity and summary, the file, line and source snippet with the range
// highlighted, and the detail. files are the parsed files (Parser.Files);
// color adds VT100 colors for a terminal.
func WriteDiagnostics(w io.Writer, files map[string]*hcl2.File, diags hcl2.Diagnostics, color bool) error {
	return hcl2.NewDiagnosticTextWriter(w, files, DiagnosticWidth, color).WriteDiagnostics(diags)
}

// JSONReport is the document `fleetplan validate -json` prints.
type JSONReport struct {
	Valid       bool             `json:"valid"`
	Diagnostics []JSONDiagnostic `json:"diagnostics"`
}

// JSONDiagnostic is one diagnostic in machine-readable form.
type JSONDiagnostic struct {
	Severity string `json:"severity"` // "error" or "warning"
	Summary  string `json:"summary"`
	Detail   string `json:"detail"`
	// Range is absent when the problem has no place in a file (an
	// unreadable file, for one).
	Range *JSONRange `json:"range,omitempty"`
}

// JSONRange is a range in a policy file; lines and columns start at 1.
type JSONRange struct {
	Filename string  `json:"filename"`
	Start    JSONPos `json:"start"`
	End      JSONPos `json:"end"`
}

// JSONPos is a position in a policy file.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// DiagnosticsJSON converts diagnostics to their JSON form. The result is
// never nil, so that it encodes as [] when there is nothing to report.
func DiagnosticsJSON(diags hcl2.Diagnostics) []JSONDiagnostic {
	out := make([]JSONDiagnostic, 0, len(diags))
	for _, d := range diags {
		if d == nil {
			continue
		}
		jd := JSONDiagnostic{Severity: "error", Summary: d.Summary, Detail: d.Detail}
		if d.Severity == hcl2.DiagWarning {
			jd.Severity = "warning"
		}
		if d.Subject != nil {
			jd.Range = &JSONRange{
				Filename: d.Subject.Filename,
				Start:    JSONPos{Line: d.Subject.Start.Line, Column: d.Subject.Start.Column},
				End:      JSONPos{Line: d.Subject.End.Line, Column: d.Subject.End.Column},
			}
		}
		out = append(out, jd)
	}
	return out
}

// Report builds the -json document for diagnostics: valid when there is no
// error.
func Report(diags hcl2.Diagnostics) JSONReport {
	return JSONReport{Valid: !diags.HasErrors(), Diagnostics: DiagnosticsJSON(diags)}
}
