package hcl

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/plugin"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Rules of the functional block (health layer 4). The probe must be one of
// the built-in probes registered in the plugin package, and the block's
// attributes must be ones that probe uses: which ones is derived from the
// probe's own configuration schema (plugin.ProbeSchema), so that a probe
// and its policy attributes cannot drift apart (invariant I10: bad input
// gets a clear error at validate and changes nothing).

const (
	defaultFunctionalInterval = 30 * time.Second

	// httpJSONProbe is the built-in probe whose input must be JSON.
	httpJSONProbe = "http-json"

	// maxExecArgs and maxExecArgLen bound an exec probe's args.
	maxExecArgs   = 64
	maxExecArgLen = 1024
)

// probeAttrOf maps each functional-block attribute that configures the
// probe plugin to the plugin attribute it becomes. The others (probe,
// interval) apply to every probe: the agent uses them to pick and schedule
// the probe.
var probeAttrOf = map[string]string{
	"path":        "path",
	"input":       "input",
	"input_file":  "input",
	"expect":      "expect",
	"max_latency": "max_latency",
	"command":     "command",
	"args":        "args",
}

// probeRequires lists what the policy requires of a probe beyond the
// plugin's required attributes: an http-json probe without expect would
// check nothing.
var probeRequires = map[string][]string{
	httpJSONProbe: {"expect"},
}

// probeAttrs returns the functional-block attributes a known probe accepts
// and those it requires, in schema order.
func probeAttrs(probe string) (accepted, required []string) {
	schema, err := plugin.ProbeSchema(probe)
	if err != nil {
		return nil, nil
	}
	for _, attr := range functionalSpec.Attrs {
		pa, configures := probeAttrOf[attr]
		if !configures {
			accepted = append(accepted, attr)
			continue
		}
		for _, f := range schema {
			if f.Name == pa {
				accepted = append(accepted, attr)
				if f.Required || slices.Contains(probeRequires[probe], attr) {
					required = append(required, attr)
				}
			}
		}
	}
	return accepted, required
}

// probesUsing lists the known probes that accept a functional attribute.
func probesUsing(attr string) []string {
	var out []string
	for _, name := range plugin.ProbeNames() {
		if accepted, _ := probeAttrs(name); slices.Contains(accepted, attr) {
			out = append(out, name)
		}
	}
	return out
}

func (d *decoder) functional(b *hcl2.Block) *scheduler.Functional {
	c := d.content(b.Body, functionalSpec)
	f := &scheduler.Functional{Interval: defaultFunctionalInterval, Range: b.DefRange}
	probeOK := false
	if a := d.required(c, b, "probe"); a != nil {
		if s, ok := d.str(a); ok {
			switch {
			case strings.TrimSpace(s) == "":
				d.add(errEmptyString(a.Expr.Range(), "probe"))
			case !slices.Contains(plugin.ProbeNames(), s):
				d.add(errUnknownProbe(a.Expr.Range(), s, plugin.ProbeNames()))
			default:
				probeOK = true
			}
			f.Probe = s
		}
	}
	if probeOK {
		// Attributes the probe does not use are reported and left out, so
		// that a wrong probe is the only complaint about them.
		accepted, required := probeAttrs(f.Probe)
		for _, name := range functionalSpec.Attrs {
			a := c.Attributes[name]
			switch {
			case a != nil && !slices.Contains(accepted, name):
				d.add(errProbeAttribute(a.NameRange, name, f.Probe, accepted, probesUsing(name)))
				delete(c.Attributes, name)
			case a == nil && slices.Contains(required, name):
				d.add(errMissingAttribute(b.DefRange, "functional", name))
			}
		}
	}
	if a := c.Attributes["path"]; a != nil {
		if s, ok := d.str(a); ok {
			if !strings.HasPrefix(s, "/") {
				d.add(errHealthPath(a.Expr.Range(), "path", s))
			} else {
				f.Path = s
			}
		}
	}
	d.functionalInput(c, f)
	if a := c.Attributes["expect"]; a != nil {
		if m, ok := d.stringMap(a); ok {
			if len(m) == 0 {
				d.add(errEmptyExpect(a.Expr.Range()))
			}
			f.Expect = m
		}
	}
	if a := c.Attributes["command"]; a != nil {
		if s, ok := d.str(a); ok {
			if !plugin.ValidExecCommandName(s) {
				d.add(errExecCommandName(a.Expr.Range(), s))
			} else {
				f.Command = s
			}
		}
	}
	if a := c.Attributes["args"]; a != nil {
		f.Args = d.execArgs(a)
	}
	if a := c.Attributes["max_latency"]; a != nil {
		f.MaxLatency = d.positiveDuration(a, "functional", 0)
	}
	if a := c.Attributes["interval"]; a != nil {
		f.Interval = d.positiveDuration(a, "functional", defaultFunctionalInterval)
	}
	return f
}

// functionalInput reads the test input, inline or from input_file, and
// checks that an http-json probe's input is JSON.
func (d *decoder) functionalInput(c *hcl2.BodyContent, f *scheduler.Functional) {
	inputA, fileA := c.Attributes["input"], c.Attributes["input_file"]
	var input hcl2.Range
	switch {
	case inputA != nil && fileA != nil:
		d.add(errFunctionalInputBoth(fileA.NameRange))
	case inputA != nil:
		input = inputA.Expr.Range()
		if s, ok := d.str(inputA); ok {
			f.Input = s
		} else {
			inputA = nil
		}
	case fileA != nil:
		input = fileA.Expr.Range()
		fileA = d.inputFile(fileA, f)
	}
	if (inputA != nil || fileA != nil) && f.Probe == httpJSONProbe && f.Input != "" {
		var v any
		if err := json.Unmarshal([]byte(f.Input), &v); err != nil {
			d.add(errInputNotJSON(input, f.Probe, err))
		}
	}
}

// execArgs reads an exec probe's args: strings a program can receive (no
// NUL character), a bounded number of them.
func (d *decoder) execArgs(a *hcl2.Attribute) []string {
	args, ok := d.stringList(a)
	if !ok {
		return nil
	}
	if len(args) > maxExecArgs {
		d.add(errExecArgs(a.Expr.Range(), len(args), -1, ""))
		return nil
	}
	for i, s := range args {
		switch {
		case strings.ContainsRune(s, 0):
			d.add(errExecArgs(a.Expr.Range(), len(args), i, "contains a NUL character, which no program can receive in an argument"))
			return nil
		case len(s) > maxExecArgLen:
			d.add(errExecArgs(a.Expr.Range(), len(args), i, "is longer than "+bytesText(maxExecArgLen)))
			return nil
		}
	}
	return args
}

// inputFile reads a functional probe's input_file into f; it returns nil
// when the file cannot be used.
func (d *decoder) inputFile(a *hcl2.Attribute, f *scheduler.Functional) *hcl2.Attribute {
	s, ok := d.str(a)
	if !ok {
		return nil
	}
	if strings.TrimSpace(s) == "" {
		d.add(errEmptyString(a.Expr.Range(), "input_file"))
		return nil
	}
	path := d.resolve(s)
	data, err := readRegularFile(path, maxInputFileSize)
	switch {
	case errors.Is(err, errTooLarge):
		d.add(errInputFileTooLarge(a.Expr.Range(), path))
		return nil
	case err != nil:
		d.add(errInputFile(a.Expr.Range(), s, path, err))
		return nil
	}
	f.Input, f.InputFile = string(data), path
	return a
}
