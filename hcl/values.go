package hcl

import (
	"math"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// evalContext is what policy expressions may use: literal values and the
// jsonencode function (handy for a functional probe's input). Variables are
// not allowed: a policy must be readable on its own.
var evalContext = &hcl2.EvalContext{
	Functions: map[string]function.Function{
		"jsonencode": stdlib.JSONEncodeFunc,
	},
}

// maxInt bounds the whole numbers the language accepts (counts such as
// max_parallel), far above any real fleet.
const maxInt = 1 << 31

// eval evaluates an attribute to a known, non-null value. Problems are
// reported at the expression and reported once.
func (d *decoder) eval(a *hcl2.Attribute) (cty.Value, bool) {
	v, diags := a.Expr.Value(evalContext)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		d.add(errUnknownValue(a.Expr.Range(), a.Name))
		return cty.NilVal, false
	}
	if v.IsNull() {
		d.add(errNullValue(a.Expr.Range(), a.Name))
		return cty.NilVal, false
	}
	return v, true
}

func (d *decoder) typeError(a *hcl2.Attribute, want string, v cty.Value, err error) {
	d.add(errValueType(a.Expr.Range(), a.Name, want, v.Type().FriendlyName(), exampleFor("", a.Name), err))
}

func (d *decoder) str(a *hcl2.Attribute) (string, bool) {
	v, ok := d.eval(a)
	if !ok {
		return "", false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		d.typeError(a, "a string", v, nil)
		return "", false
	}
	return s.AsString(), true
}

func (d *decoder) number(a *hcl2.Attribute) (float64, bool) {
	v, ok := d.eval(a)
	if !ok {
		return 0, false
	}
	if v.Type() == cty.String && strings.HasSuffix(strings.TrimSpace(v.AsString()), "%") && strings.Contains(a.Name, "percent") {
		d.add(errPercentSign(a.Expr.Range(), a.Name, v.AsString()))
		return 0, false
	}
	n, err := convert.Convert(v, cty.Number)
	if err != nil {
		d.typeError(a, "a number", v, nil)
		return 0, false
	}
	f, ok := finite(n)
	if !ok {
		d.add(errNotFinite(a.Expr.Range(), a.Name))
		return 0, false
	}
	return f, true
}

// finite returns a known, non-null number as a float64, and false when it
// does not fit.
func finite(n cty.Value) (float64, bool) {
	bf := n.AsBigFloat()
	if bf.IsInf() {
		return 0, false
	}
	f, _ := bf.Float64()
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

func (d *decoder) integer(a *hcl2.Attribute) (int, bool) {
	f, ok := d.number(a)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) {
		d.add(errNotWholeNumber(a.Expr.Range(), a.Name, f))
		return 0, false
	}
	if math.Abs(f) > maxInt {
		d.add(errNotFinite(a.Expr.Range(), a.Name))
		return 0, false
	}
	return int(f), true
}

func (d *decoder) boolean(a *hcl2.Attribute) (bool, bool) {
	v, ok := d.eval(a)
	if !ok {
		return false, false
	}
	b, err := convert.Convert(v, cty.Bool)
	if err != nil {
		d.typeError(a, "true or false", v, nil)
		return false, false
	}
	return b.True(), true
}

// duration reads a Go duration string ("90s", "15m", "1h30m"). A bare
// number is refused with the fix, since its unit would be a guess.
func (d *decoder) duration(a *hcl2.Attribute) (time.Duration, bool) {
	v, ok := d.eval(a)
	if !ok {
		return 0, false
	}
	if v.Type() == cty.Number {
		if f, ok := finite(v); ok {
			d.add(errDurationNumber(a.Expr.Range(), a.Name, f))
		} else {
			d.add(errNotFinite(a.Expr.Range(), a.Name))
		}
		return 0, false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		d.typeError(a, "a duration string", v, nil)
		return 0, false
	}
	dur, err := time.ParseDuration(strings.TrimSpace(s.AsString()))
	if err != nil {
		d.add(errDurationSyntax(a.Expr.Range(), a.Name, s.AsString()))
		return 0, false
	}
	return dur, true
}

func (d *decoder) stringList(a *hcl2.Attribute) ([]string, bool) {
	v, ok := d.eval(a)
	if !ok {
		return nil, false
	}
	l, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		d.typeError(a, "a list of strings", v, nil)
		return nil, false
	}
	out := make([]string, 0, l.LengthInt())
	for it := l.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			d.add(errNullValue(a.Expr.Range(), "An item of "+a.Name))
			return nil, false
		}
		out = append(out, e.AsString())
	}
	return out, true
}

func (d *decoder) stringMap(a *hcl2.Attribute) (map[string]string, bool) {
	v, ok := d.eval(a)
	if !ok {
		return nil, false
	}
	m, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		d.typeError(a, "a map of strings", v, err)
		return nil, false
	}
	out := make(map[string]string, m.LengthInt())
	for it := m.ElementIterator(); it.Next(); {
		k, e := it.Element()
		if e.IsNull() {
			d.add(errNullValue(keyRange(a.Expr, k.AsString()), a.Name+"."+k.AsString()))
			return nil, false
		}
		out[k.AsString()] = e.AsString()
	}
	return out, true
}

// keyRange finds the range of one key of an object constructor, so that a
// problem with one entry of a map is reported at that entry; it falls back
// to the whole expression.
func keyRange(expr hcl2.Expression, key string) hcl2.Range {
	oc, ok := expr.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return expr.Range()
	}
	for _, item := range oc.Items {
		kv, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || !kv.IsKnown() || kv.IsNull() || kv.Type() != cty.String {
			continue
		}
		if kv.AsString() == key {
			return item.KeyExpr.Range()
		}
	}
	return expr.Range()
}
