package hcl

import (
	"errors"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/fleetplan/fleetplan/scheduler"
)

var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) release(b *hcl2.Block) scheduler.Release {
	c := d.content(b.Body, releaseSpec)
	r := scheduler.Release{Range: b.DefRange, JobspecRange: b.DefRange, VersionRange: b.DefRange}
	if a := d.required(c, b, "jobspec"); a != nil {
		r.JobspecRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" {
				d.add(errEmptyString(a.Expr.Range(), "jobspec"))
			} else {
				r.Jobspec = d.resolve(s)
				switch info, err := os.Stat(r.Jobspec); {
				case errors.Is(err, fs.ErrNotExist):
					d.add(errJobspecNotFound(a.Expr.Range(), s, r.Jobspec))
				case err != nil:
					d.add(errJobspecUnreadable(a.Expr.Range(), s, r.Jobspec, err))
				case !info.Mode().IsRegular():
					d.add(errJobspecNotFile(a.Expr.Range(), s, r.Jobspec, info))
				case info.Size() > MaxJobspecSize:
					d.add(errJobspecTooLarge(a.Expr.Range(), s, r.Jobspec, info.Size()))
				default:
					d.inspectJobspec(a, r.Jobspec)
				}
			}
		}
	}
	if a := d.required(c, b, "version"); a != nil {
		r.VersionRange = a.Expr.Range()
		if v, diags := a.Expr.Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type() == cty.Number {
			// 2.40 would become "2.4": versions are strings.
			d.add(errVersionNumber(a.Expr.Range(), d.text(a.Expr.Range())))
		} else if s, ok := d.str(a); ok {
			switch {
			case strings.TrimSpace(s) == "":
				d.add(errEmptyString(a.Expr.Range(), "version"))
			case strings.ContainsFunc(s, isSpace):
				d.add(errVersionSpaces(a.Expr.Range(), s))
			case strings.Contains(s, "+"):
				d.add(errVersionBuildMetadata(a.Expr.Range(), s))
			}
			r.Version = s
		}
	}
	if a := c.Attributes["env"]; a != nil {
		r.Env = d.env(a)
	}

	var first = map[string]hcl2.Range{}
	for _, vb := range c.Blocks {
		if vb.Type != "variant" {
			continue
		}
		class := vb.Labels[0]
		if strings.TrimSpace(class) == "" {
			d.add(errEmptyVariantClass(vb.LabelRanges[0]))
			continue
		}
		if prev, dup := first[class]; dup {
			d.add(errDuplicateVariant(vb.LabelRanges[0], class, prev))
			continue
		}
		first[class] = vb.DefRange
		v := scheduler.Variant{Class: class, Range: vb.DefRange}
		vc := d.content(vb.Body, variantSpec)
		if a := vc.Attributes["env"]; a != nil {
			v.Env = d.env(a)
		}
		if r.Variants == nil {
			r.Variants = map[string]scheduler.Variant{}
		}
		r.Variants[class] = v
	}
	return r
}

func (d *decoder) env(a *hcl2.Attribute) map[string]string {
	m, ok := d.stringMap(a)
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !envNameRe.MatchString(k) {
			d.add(errEnvName(keyRange(a.Expr, k), k))
		}
	}
	return m
}
