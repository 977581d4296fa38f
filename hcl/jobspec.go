package hcl

import (
	"path/filepath"
	"slices"
	"sort"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// inspectJobspec parses the jobspec (an HCL file; JSON jobspecs are left to
// the Nomad server) to warn early about a syntax error and to learn its
// port labels for the health checks. It never evaluates the jobspec: the
// Nomad server does that.
func (d *decoder) inspectJobspec(a *hcl2.Attribute, path string) {
	if strings.EqualFold(filepath.Ext(path), ".json") {
		return
	}
	src, err := readRegularFile(path, MaxJobspecSize)
	if err != nil {
		return
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl2.InitialPos)
	if diags.HasErrors() {
		for _, diag := range diags {
			if diag.Severity == hcl2.DiagError {
				d.add(warnJobspecSyntax(a.Expr.Range(), filepath.Base(path), diag))
				return
			}
		}
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return
	}
	d.jobPorts, d.jobPortsOK = jobspecPorts(body)
}

// jobspecPorts lists the port labels a parsed Nomad jobspec declares in its
// network blocks; ok is false when it holds no job block.
func jobspecPorts(body *hclsyntax.Body) (labels []string, ok bool) {
	var walk func(b *hclsyntax.Body, depth int)
	walk = func(b *hclsyntax.Body, depth int) {
		for _, blk := range b.Blocks {
			switch {
			case depth == 0 && blk.Type == "job":
				ok = true
				walk(blk.Body, 1)
			case depth > 0 && blk.Type == "port" && len(blk.Labels) == 1:
				if !slices.Contains(labels, blk.Labels[0]) {
					labels = append(labels, blk.Labels[0])
				}
			case depth > 0 && depth < 5:
				walk(blk.Body, depth+1)
			}
		}
	}
	walk(body, 0)
	sort.Strings(labels)
	return labels, ok
}
