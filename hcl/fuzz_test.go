package hcl

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseSource feeds arbitrary sources to the policy decoder, seeded with
// the examples and the test policies. It must never panic; every diagnostic
// must be printable and point into the file; a policy decoded without
// errors must satisfy the field's rules.
//
//	go test -run '^$' -fuzz FuzzParseSource -fuzztime 3m ./hcl/
//
// The seeds are whole policies, so minimizing each new interesting input
// takes long; -fuzzminimizetime 10s keeps more of the time for fuzzing.
func FuzzParseSource(f *testing.F) {
	var seeds []string
	for _, pattern := range []string{"../examples/*.fleet.hcl", "testdata/validate/*.fleet.hcl"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, m...)
	}
	if len(seeds) == 0 {
		f.Fatal("no seed policies")
	}
	for _, path := range seeds {
		src, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(basePolicy))
	f.Add([]byte(""))
	f.Add([]byte(`rollout "x" { canary { percent = 1e999999 } }`))

	f.Fuzz(func(t *testing.T, src []byte) {
		p := NewParser()
		policies, diags := p.ParseSource(caseFile, src)
		for _, d := range diags {
			if d == nil {
				t.Fatal("nil diagnostic")
			}
			if d.Subject != nil && (d.Subject.Filename != caseFile || d.Subject.Start.Line < 1) {
				t.Fatalf("diagnostic %q at %v", d.Summary, d.Subject)
			}
		}
		if err := WriteDiagnostics(io.Discard, p.Files(), diags, true); err != nil {
			t.Fatal(err)
		}
		if _, err := json.Marshal(Report(diags)); err != nil {
			t.Fatal(err)
		}
		if diags.HasErrors() {
			if policies != nil {
				t.Fatal("policies returned with errors")
			}
			return
		}
		for _, pol := range policies {
			if pol == nil {
				t.Fatal("nil policy")
			}
			checkInvariants(t, pol)
		}
	})
}
