package hcl

import (
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// Every diagnostic the policy language produces is built here, so that the
// wording stays consistent and each message says how to fix the problem.
// Conventions: the summary names the problem in a few words; the detail
// explains why it matters and shows what to write instead. Ranges are the
// offending expression (a bad value), the attribute or block name (an
// unknown name) or the enclosing block's DefRange (something missing).

func newError(subject hcl2.Range, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{Severity: hcl2.DiagError, Summary: summary, Detail: detail, Subject: subject.Ptr()}
}

func newWarning(subject hcl2.Range, summary, detail string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{Severity: hcl2.DiagWarning, Summary: summary, Detail: detail, Subject: subject.Ptr()}
}

// ---- files ---------------------------------------------------------------

func errReadFile(path string, err error) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{
		Severity: hcl2.DiagError,
		Summary:  "Cannot read policy file",
		Detail:   fmt.Sprintf("fleetplan could not read %q: %s.", path, unwrapPathError(err)),
	}
}

func errNoPolicyFiles(dir string) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{
		Severity: hcl2.DiagError,
		Summary:  "No policy files",
		Detail:   fmt.Sprintf("The folder %q holds no %s file. Name policy files <application>.fleet.hcl, or give the files themselves.", dir, PolicyGlob),
	}
}

func errNoRollout(file hcl2.Range) *hcl2.Diagnostic {
	return newError(file, "No rollout block",
		"A policy file describes one or more rollouts, each in a block such as:\n\n"+
			"rollout \"detector\" {\n  fleet { ... }\n  release { ... }\n  canary { ... }\n  wave { ... }\n  health { ... }\n  rollback { ... }\n}\n\n"+
			"The label is the application name. See examples/detector.fleet.hcl for a complete policy.")
}

func errDuplicateRollout(subject hcl2.Range, name string, first hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Duplicate rollout",
		fmt.Sprintf("A rollout for %q is already defined at %s. The label is the application name and names its Nomad jobs (%s-blue, %s-green), so each application has one rollout. Rename this one or remove it.",
			name, shortRange(first), name, name))
}

func errRolloutName(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Invalid application name",
		fmt.Sprintf("The rollout label %q names the application and its Nomad jobs (<name>-blue, <name>-green) and node metadata key (fleetplan.<name>.slot). Use 1 to 63 letters, digits, \"-\" or \"_\", starting with a letter or digit, for example \"detector\".", name))
}

// ---- structure -----------------------------------------------------------

// errUnknownAttribute reports an attribute the block does not accept, with
// a suggestion: the block where the name belongs, a close name, or the list
// of accepted names.
func errUnknownAttribute(subject hcl2.Range, name string, in *blockSpec, candidates []string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("An argument named %q is not expected %s.", name, in.where())
	switch {
	case in.hasBlock(name):
		detail += fmt.Sprintf(" %q is a block here: write it as %s { ... }, without the equals sign.", name, name)
	case len(attrHomes[name]) > 0:
		detail += fmt.Sprintf(" %q belongs in %s.", name, homesText(attrHomes[name]))
	default:
		if s := suggest(name, candidates); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		} else if len(in.Attrs) > 0 {
			detail += " The arguments accepted here are " + quotedList(in.Attrs, "and") + "."
		}
	}
	return newError(subject, "Unsupported argument", detail)
}

func errUnknownBlock(subject hcl2.Range, name string, in *blockSpec) *hcl2.Diagnostic {
	detail := fmt.Sprintf("Blocks of type %q are not expected %s.", name, in.where())
	var names []string
	for _, b := range in.Blocks {
		names = append(names, b.Type)
	}
	switch {
	case in.hasAttr(name):
		detail += fmt.Sprintf(" %q is an argument here: assign it with an equals sign, %s = ...", name, name)
	case len(blockHomes[name]) > 0:
		detail += fmt.Sprintf(" %s %s block belongs in %s.", capitalize(article(name)), name, homesText(blockHomes[name]))
	default:
		if s := suggest(name, names); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		} else if len(names) > 0 {
			detail += " The blocks accepted here are " + quotedList(names, "and") + "."
		} else {
			detail += " No blocks are accepted here."
		}
	}
	return newError(subject, "Unsupported block type", detail)
}

// labelHelp explains each block label, keyed by "block.label".
var labelHelp = map[string]string{
	"rollout.application": `A rollout block is labelled with the application's name, which names its Nomad jobs: rollout "detector" { ... }.`,
	"variant.class":       `A variant block is labelled with the Nomad node class it applies to: variant "jetson" { ... }.`,
	"notify.type":         `A notify block is labelled with the notifier's type (webhook, slack or log) and a name of your choice: notify "webhook" "ops" { ... }.`,
	"notify.name":         `A notify block is labelled with the notifier's type and a name of your choice, used in logs and errors: notify "webhook" "ops" { ... }.`,
}

func errMissingLabel(subject hcl2.Range, typ, label string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Missing %s label", label), labelHelp[typ+"."+label])
}

func errExtraLabel(subject hcl2.Range, typ string, labels []string) *hcl2.Diagnostic {
	if len(labels) == 0 {
		return newError(subject, "Unexpected label",
			fmt.Sprintf("%s blocks take no label: write %s { ... }.", capitalize(typ), typ))
	}
	return newError(subject, "Extraneous label",
		fmt.Sprintf("%s Remove the extra label.", labelHelp[typ+"."+labels[0]]))
}

func errJobspecGiven(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Nomad jobspec given instead of a policy",
		"This file is a Nomad job specification, not a rollout policy. fleetplan validates policy files (*.fleet.hcl); a policy names its jobspec in release { jobspec = \"...\" }, and fleetplan compiles it into the two slot jobs. See examples/detector.fleet.hcl.")
}

func errDuplicateBlock(subject hcl2.Range, typ, parent string, first hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Duplicate %s block", typ),
		fmt.Sprintf("A %s block holds at most one %s block; the first one is at %s. Merge the two into one.",
			parent, typ, shortRange(first)))
}

// errMissingBlock reports a required block at the opening line of the block
// that should contain it.
func errMissingBlock(subject hcl2.Range, parent, typ string) *hcl2.Diagnostic {
	h := missingBlockHelp[typ]
	return newError(subject, fmt.Sprintf("Missing %s block", typ),
		fmt.Sprintf("The %s block needs %s %s block: %s Add, for example:\n\n%s", parent, article(typ), typ, h.why, h.example))
}

// missingBlockHelp says why each required block is needed and shows one.
var missingBlockHelp = map[string]struct{ why, example string }{
	"fleet": {"it selects the devices the rollout covers.",
		"fleet {\n  selector = \"Meta.fleet == \\\"vision\\\"\"\n}"},
	"release": {"it names the application's Nomad jobspec and the version to roll out.",
		"release {\n  jobspec = \"detector.nomad.hcl\"\n  version = \"2.4.1\"\n}"},
	"canary": {"every rollout starts with a canary of 1 to 5 % of the fleet, with at least one device of every node class, and no setting skips it.",
		"canary {\n  percent = 2\n  soak    = \"15m\"\n}"},
	"health": {"waves are gated on the devices' health, and at least the application's own health endpoint must be checked.",
		"health {\n  application {\n    port = \"http\"\n    path = \"/health\"\n  }\n}"},
	"rollback": {"automatic rollback triggers must be defined, so that a failing rollout is taken back with no human in the loop.",
		"rollback {\n  max_failure_percent = 2\n}"},
	"application": {"a ping is not a health check. The application's own health endpoint must answer 200 with its status and the version being rolled out.",
		"application {\n  port = \"http\"\n  path = \"/health\"\n}"},
}

// errMissingAttribute reports a required attribute at the opening line of
// its block.
func errMissingAttribute(subject hcl2.Range, block, name string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Missing required argument %q", name),
		fmt.Sprintf("The %s block needs %s: %s Add, for example:\n\n%s", block, name, requiredWhy[block+"."+name], exampleFor(block, name)))
}

// ---- values --------------------------------------------------------------

func errNullValue(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Null value",
		fmt.Sprintf("%s cannot be null. Give it a value, or remove the line to use the default (where there is one).", name))
}

func errUnknownValue(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Value not known",
		fmt.Sprintf("The value of %s cannot be computed from the policy file alone. Write a literal value.", name))
}

func errValueType(subject hcl2.Range, name, want, got, example string, err error) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%s must be %s, not %s %s", name, want, article(got), got)
	if err != nil {
		detail += fmt.Sprintf(" (%s)", err)
	}
	detail += "."
	if example != "" {
		detail += " For example: " + example
	}
	return newError(subject, "Incorrect value type", detail)
}

func errPercentSign(subject hcl2.Range, name, text string) *hcl2.Diagnostic {
	n := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(text), "%"))
	return newError(subject, "Percentage written as a string",
		fmt.Sprintf("%s is a number of percent: write %s = %s, without quotes or the %% sign.", name, name, n))
}

func errNotFinite(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Number out of range",
		fmt.Sprintf("%s is too large to be a meaningful value. Write an ordinary number.", name))
}

func errNotWholeNumber(subject hcl2.Range, name string, v float64) *hcl2.Diagnostic {
	return newError(subject, "Whole number required",
		fmt.Sprintf("%s counts things, so it must be a whole number; %s is not. Write, for example, %s = %d.",
			name, fmtNum(v), name, int64(math.Max(1, math.Round(v)))))
}

func errIntRange(subject hcl2.Range, block, name string, v, minimum int) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Invalid %s", name),
		fmt.Sprintf("%s is %d, but it must be at least %d: %s", name, v, minimum, rangeWhy[block+"."+name]))
}

func errPercentRange(subject hcl2.Range, block, name string, v, lo, hi float64) *hcl2.Diagnostic {
	label := name
	if block == "wave" {
		label = "wave percent"
	}
	return rangeError(subject, label, v, lo, hi, rangeWhy[block+"."+name])
}

func rangeError(subject hcl2.Range, label string, v, lo, hi float64, why string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Invalid %s", label),
		fmt.Sprintf("%s is %s, but it must be between %s and %s: %s", label, fmtNum(v), fmtNum(lo), fmtNum(hi), why))
}

// rangeWhy explains the bounds of each bounded number and duration, keyed
// by "block.attribute".
var rangeWhy = map[string]string{
	"rollout.max_parallel":                      "it is the number of device switches in flight at once, so at least one is needed to make progress.",
	"canary.min_per_class":                      "the canary must include at least one device of every node class, so that each class's variant is proven before the waves.",
	"wave.percent":                              "it is the cumulative share of the fleet running the new version once the wave is through; the last wave is at 100.",
	"connectivity.heartbeat_timeout":            "a device whose last heartbeat is older than this counts as disconnected; zero would fail every device.",
	"system.max_cpu_percent":                    "it is a share of the device's capacity; 0 turns the check off.",
	"system.max_memory_percent":                 "it is a share of the device's capacity; 0 turns the check off.",
	"system.max_disk_percent":                   "it is a share of the device's capacity; 0 turns the check off.",
	"application.interval":                      "it is how often the health endpoint is called.",
	"application.timeout":                       "it is how long the health endpoint may take to answer.",
	"application.max_restarts":                  "it is how many times the new version's task may restart on a device before the device counts as failed (a crash loop).",
	"functional.max_latency":                    "it is the longest the application may take to answer the test input.",
	"functional.interval":                       "it is how often the test input is sent.",
	"rollback.max_failure_percent":              "it is the share of the devices a wave attempted that may fail before fleetplan rolls back; 0 rolls back on the first failure.",
	"rollback.max_offline_after_switch_percent": "it is the share of the devices a wave switched to the new version that may then drop offline before fleetplan rolls back; devices offline before their switch are skipped and do not count. When it is absent it equals max_failure_percent.",
	"rollback.max_p95_latency_increase_percent": "it is how much slower (in percent of the old version's p95 latency) the new version may be; 0 turns the check off.",
	"offline.max_offline_percent":               "above this share of offline devices the rollout pauses; 0 turns the check off.",
	"tolerance.p95_latency_percent":             "it is how much higher (in percent of group A's p95 latency) group B's may be and still count as not worse.",
	"ab.min_requests":                           "it is how many requests (or probe runs) each group needs in a class before its rates are compared.",
	"ab.min_samples":                            "it is how many latency samples each group needs in a class before they are compared.",
	"notify.timeout":                            "it bounds one delivery of a notification, retries included.",
}

func errEmptyString(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Empty %s", name),
		fmt.Sprintf("%s must not be empty. For example: %s", name, exampleFor("", name)))
}

// errUnknownEnum reports a value outside an enumeration, listing the
// accepted ones and suggesting the closest.
func errUnknownEnum(subject hcl2.Range, name, value string, allowed []string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%q is not a valid %s.", value, name)
	if s := suggest(value, allowed); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	detail += fmt.Sprintf(" The accepted values are %s (the default is %q).", quotedList(allowed, "and"), allowed[0])
	return newError(subject, fmt.Sprintf("Unknown %s", name), detail)
}

// ---- durations -----------------------------------------------------------

func errDurationSyntax(subject hcl2.Range, name, text string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%q is not a duration. Write a number followed by a unit, such as \"90s\", \"15m\" or \"1h30m\" (units: ms, s, m, h).", text)
	t := strings.TrimSpace(strings.ToLower(text))
	switch {
	case strings.HasSuffix(t, "d") && isNumber(strings.TrimSuffix(t, "d")):
		n, _ := strconv.ParseFloat(strings.TrimSuffix(t, "d"), 64)
		detail += fmt.Sprintf(" Days are not a unit: write \"%sh\".", fmtNum(n*24))
	case isNumber(t):
		detail += fmt.Sprintf(" A bare number has no unit: write \"%ss\" for seconds.", t)
	}
	return newError(subject, "Invalid duration", fmt.Sprintf("%s: %s", name, detail))
}

func errDurationNumber(subject hcl2.Range, name string, v float64) *hcl2.Diagnostic {
	return newError(subject, "Duration without a unit",
		fmt.Sprintf("%s is a duration, written as a string with a unit: for %s seconds write %s = \"%ss\" (units: ms, s, m, h).",
			name, fmtNum(v), name, fmtNum(v)))
}

func errDurationNotPositive(subject hcl2.Range, block, name string, d time.Duration) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Invalid %s", name),
		fmt.Sprintf("%s is %s, but it must be longer than zero: %s", name, d, rangeWhy[block+"."+name]))
}

func errDurationNegative(subject hcl2.Range, name string, d time.Duration) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Invalid %s", name),
		fmt.Sprintf("%s is %s; a duration cannot be negative. Use \"0s\" for none.", name, d))
}

func errSoakNotPositive(subject hcl2.Range, stage string, d time.Duration) *hcl2.Diagnostic {
	return newError(subject, "Invalid soak",
		fmt.Sprintf("%s soaks for %s. The soak is how long the new version runs on the stage's devices, with health watched throughout, before the gate decides whether the rollout goes on: without it nothing is watched. Use at least a few minutes, for example soak = \"10m\".",
			capitalize(stage), d))
}

func warnShortSoak(subject hcl2.Range, stage string, d time.Duration) *hcl2.Diagnostic {
	return newWarning(subject, "Short soak",
		fmt.Sprintf("%s soaks for only %s. Problems such as memory leaks, thermal throttling or crash loops take minutes to show, so a soak under one minute lets a bad version through the gate. Fine for a demo; for a real fleet use several minutes, for example soak = \"10m\".",
			capitalize(stage), d))
}

func errCheckBelowOneSecond(subject hcl2.Range, name string, v time.Duration) *hcl2.Diagnostic {
	return newError(subject, "Health check "+name+" below one second",
		fmt.Sprintf("application.%s = %s, but Nomad refuses service checks whose interval or timeout is under 1s, so the slot job could not be registered. Use at least \"1s\", for example interval = \"5s\" and timeout = \"2s\".", name, v))
}

func warnTimeoutNotBelowInterval(subject hcl2.Range, timeout, interval time.Duration) *hcl2.Diagnostic {
	return newWarning(subject, "Health check timeout not below its interval",
		fmt.Sprintf("The application check times out after %s but runs every %s, so a slow answer overlaps the next check. Make timeout shorter than interval, for example interval = \"5s\" and timeout = \"2s\".",
			timeout, interval))
}

// ---- the field's rules ---------------------------------------------------

func errBigBangStrategy(subject hcl2.Range, value string) *hcl2.Diagnostic {
	return newError(subject, "Big-bang rollouts are not allowed",
		fmt.Sprintf("strategy = %q would move every device to the new version at once: one bad build would take the whole fleet down before any health gate could stop it, and a rollback would have to touch every device. fleetplan always starts with a canary (1 to 5 %% of the fleet, at least one device of every node class) and then moves in health-gated waves; no setting skips the canary, hotfixes included.\n\n"+
			"Use strategy = \"canary-rolling\" (the default) with waves, for example:\n\n"+
			"canary {\n  percent = 5\n  soak    = \"10m\"\n}\nwave {\n  percent = 25\n  soak    = \"10m\"\n}\nwave {\n  percent = 100\n  soak    = \"10m\"\n}\n\n"+
			"For an urgent fix, keep the canary and shorten the soaks; for a switch with nothing to restart on rollback, use strategy = \"blue-green\".",
			value))
}

func errBigBangCanary(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	return newError(subject, "Big-bang rollouts are not allowed",
		fmt.Sprintf("A canary of %s %% sends the new version to the whole fleet at once, which is a big-bang rollout. The canary is the small first group that proves a version before the rest of the fleet gets it: set percent between 1 and 5, and move the rest of the fleet with wave blocks (the last one at percent = 100).",
			fmtNum(v)))
}

func errCanaryPercent(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	why := "a canary of 1 to 5 % of the fleet is large enough to catch a bad version and small enough to limit the damage."
	switch {
	case v <= 0:
		why = "every rollout starts with a canary, and a canary of 0 % would skip it. min_per_class still makes sure every node class is in the canary."
	case v < 1:
		why = "a canary under 1 % of the fleet proves too little; min_per_class already makes sure every node class is in the canary."
	case v > 5:
		why = "a larger first step puts too much of the fleet at risk before the canary is proven. Move the rest of the fleet with wave blocks."
	}
	return rangeError(subject, "canary percent", v, 1, 5, why)
}

// The wave diagnostics take a hint: when the percentages look like step
// sizes, the cumulative shares they were probably meant as (see
// stepSizeHint), given once.

func errWaveNotAboveCanary(subject hcl2.Range, wave int, v, canary float64, hint string) *hcl2.Diagnostic {
	return newError(subject, "Wave not above the canary",
		fmt.Sprintf("Wave %d asks for %s %% of the fleet, but the canary already runs the new version on %s %%. Wave percentages are cumulative: each is the share of the fleet that runs the new version once the wave is through, so the first wave must be above the canary's %s %%, for example percent = %s.%s",
			wave, fmtNum(v), fmtNum(canary), fmtNum(canary), fmtNum(suggestNextPercent(canary)), hint))
}

func errWaveNotIncreasing(subject hcl2.Range, wave int, v float64, prevWave int, prev float64, prevRange hcl2.Range, hint string) *hcl2.Diagnostic {
	return newError(subject, "Waves not increasing",
		fmt.Sprintf("Wave %d asks for %s %% of the fleet, but wave %d (line %d) already reaches %s %%. Wave percentages are cumulative shares of the fleet, not sizes of each step, so they must grow from wave to wave and end at 100: for example 10, 50, 100.%s",
			wave, fmtNum(v), prevWave, prevRange.Start.Line, fmtNum(prev), hint))
}

func errLastWaveNot100(subject hcl2.Range, v float64, hint string) *hcl2.Diagnostic {
	return newError(subject, "Last wave does not reach 100 %",
		fmt.Sprintf("The last wave ends at %s %% of the fleet, so the rest would stay on the old version forever. Wave percentages are cumulative: end with a wave at percent = 100. (To keep part of the fleet on the old version on purpose, use strategy = \"a-b\".)%s",
			fmtNum(v), hint))
}

func errABLastWave100(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "A-B rollout leaves nothing to compare",
		"With strategy = \"a-b\" the last wave is the share of the fleet that runs the new version beside the old one, for the comparison. At 100 % no device is left on the old version. Set the last wave below 100 (for example percent = 50), or use strategy = \"canary-rolling\" to move the whole fleet.")
}

func errNoWaves(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Missing wave block",
		fmt.Sprintf("Rollout %q has no wave: after the canary, the rest of the fleet moves in health-gated waves, each with a cumulative percent and a soak. Add at least one, the last at 100 %%, for example:\n\nwave {\n  percent = 25\n  soak    = \"10m\"\n}\nwave {\n  percent = 100\n  soak    = \"10m\"\n}", name))
}

func warnAutoApproval(subject hcl2.Range) *hcl2.Diagnostic {
	return newWarning(subject, "Canary approved automatically",
		"With approval = \"auto\" the rollout leaves the canary as soon as its gate passes, without a person looking at it. The gates only catch what they measure; the field wants a human to look at the canary before the waves start. Prefer approval = \"manual\" and approve with fleetplan, or keep \"auto\" only where nobody can be there.")
}

// ---- release -------------------------------------------------------------

func errJobspecNotFound(subject hcl2.Range, written, resolved string) *hcl2.Diagnostic {
	return newError(subject, "Jobspec file not found",
		fmt.Sprintf("The jobspec %q does not exist. fleetplan looked for it at:\n%s\nA relative jobspec path is relative to the folder of the policy file, not to the current directory. Fix the path or create the jobspec.",
			written, resolved))
}

func errJobspecNotFile(subject hcl2.Range, written, resolved string, info fs.FileInfo) *hcl2.Diagnostic {
	what := "something that is not a regular file"
	if info.IsDir() {
		what = "a folder"
	}
	return newError(subject, "Unusable jobspec",
		fmt.Sprintf("The jobspec %q cannot be used. fleetplan looked for it at:\n%s\nand found %s. Point jobspec at the Nomad job file itself, for example jobspec = \"detector.nomad.hcl\".",
			written, resolved, what))
}

func errJobspecUnreadable(subject hcl2.Range, written, resolved string, err error) *hcl2.Diagnostic {
	return newError(subject, "Unusable jobspec",
		fmt.Sprintf("The jobspec %q cannot be used. fleetplan looked for it at:\n%s\nand could not read it: %s.", written, resolved, unwrapPathError(err)))
}

func warnJobspecSyntax(subject hcl2.Range, jobspec string, diag *hcl2.Diagnostic) *hcl2.Diagnostic {
	where := jobspec
	if diag.Subject != nil {
		where = fmt.Sprintf("%s:%d,%d", jobspec, diag.Subject.Start.Line, diag.Subject.Start.Column)
	}
	return newWarning(subject, "Jobspec does not parse",
		fmt.Sprintf("The jobspec is not valid HCL: %s: %s. %s The Nomad server will reject it (unless it is a legacy HCL1 jobspec); run nomad job validate on it.",
			where, diag.Summary, diag.Detail))
}

func errVersionNumber(subject hcl2.Range, text string) *hcl2.Diagnostic {
	if text == "" {
		text = "2.4.1"
	}
	return newError(subject, "Version written as a number",
		fmt.Sprintf("The version is compared exactly with the one the application reports, and as a number it loses its form (2.40 becomes 2.4). Quote it: version = %q.", text))
}

func errVersionSpaces(subject hcl2.Range, v string) *hcl2.Diagnostic {
	return newError(subject, "Invalid version",
		fmt.Sprintf("The version %q contains white space. The application reports its version on its health endpoint and fleetplan compares the two exactly, so write the version the application reports, for example version = \"2.4.1\".", v))
}

func errEnvName(subject hcl2.Range, key string) *hcl2.Diagnostic {
	return newError(subject, "Invalid environment variable name",
		fmt.Sprintf("%q is not a usable environment variable name. Use letters, digits and underscores, not starting with a digit, for example LOG_LEVEL.", key))
}

func errDuplicateVariant(subject hcl2.Range, class string, first hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Duplicate variant",
		fmt.Sprintf("A variant for node class %q is already defined at %s. Each node class has one variant; merge the two.", class, shortRange(first)))
}

func errEmptyVariantClass(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Empty node class",
		"The variant label is the Nomad node class it applies to (node_class in the client configuration) and cannot be empty, for example variant \"jetson\" { ... }.")
}

func errEmptyListItem(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Empty item in %s", name),
		fmt.Sprintf("%s contains an empty string. Remove it, or write the name, for example [\"dc1\"].", name))
}

// ---- health --------------------------------------------------------------

func errHealthPath(subject hcl2.Range, name, path string) *hcl2.Diagnostic {
	return newError(subject, fmt.Sprintf("Invalid %s", name),
		fmt.Sprintf("%q is not an HTTP path: it must start with \"/\", for example %q.", path, "/"+strings.TrimLeft(path, "/")))
}

func errPortLabel(subject hcl2.Range, port string) *hcl2.Diagnostic {
	return newError(subject, "Invalid port",
		fmt.Sprintf("%q is not a port label. port names the port label of the jobspec's network block (port \"http\" {}), for example port = \"http\".", port))
}

func warnPortNotInJobspec(subject hcl2.Range, port, jobspec string, labels []string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("The health checks use the port labelled %q, but the jobspec %s ", port, jobspec)
	if len(labels) == 0 {
		detail += "declares no port in a network block. Add one, for example network { port \"http\" {} }, and let the application listen on it."
	} else {
		detail += fmt.Sprintf("declares only %s. Set port to one of them", quotedList(labels, "and"))
		if s := suggest(port, labels); s != "" {
			detail += fmt.Sprintf(" (did you mean %q?)", s)
		}
		detail += "."
	}
	return newWarning(subject, "Port not found in the jobspec", detail)
}

func warnExpectVersionOff(subject hcl2.Range) *hcl2.Diagnostic {
	return newWarning(subject, "Version not checked",
		"With expect_version = false a device that still runs the old version (a failed switch, a stale binary) passes the application check. Keep expect_version = true unless the application cannot report its version.")
}

func errTemperature(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	detail := fmt.Sprintf("max_temperature_c is %s, which is not a plausible device temperature in degrees Celsius. Use a value between 1 and 150, typically the thermal throttling point of the board (85 for a Raspberry Pi, about 95 for a Jetson).", fmtNum(v))
	if v > 150 && v <= 302 {
		detail += fmt.Sprintf(" If %s is in Fahrenheit, that is %s °C.", fmtNum(v), fmtNum(math.Round((v-32)*5/9)))
	}
	return newError(subject, "Implausible temperature", detail)
}

func warnLowTemperature(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	return newWarning(subject, "Very low temperature limit",
		fmt.Sprintf("max_temperature_c = %s °C is below what a working device reaches at idle, so healthy devices would fail the system check. Use the board's thermal throttling point, for example 85.", fmtNum(v)))
}

func errErrorRate(subject hcl2.Range, v float64) *hcl2.Diagnostic {
	detail := fmt.Sprintf("max_error_rate is %s, but it is a fraction of requests between 0 and 1.", fmtNum(v))
	if v > 1 && v <= 100 {
		detail += fmt.Sprintf(" For %s %% write max_error_rate = %s.", fmtNum(v), fmtNum(v/100))
	}
	return newError(subject, "Invalid max_error_rate", detail)
}

func errFunctionalInputBoth(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Conflicting test inputs",
		"The functional block sets both input and input_file. Keep one: input for a short inline input, input_file for a larger one kept beside the policy.")
}

func errInputFile(subject hcl2.Range, written, resolved string, err error) *hcl2.Diagnostic {
	return newError(subject, "Unusable input_file",
		fmt.Sprintf("The functional test input %q cannot be read. fleetplan looked for it at:\n%s\n%s. A relative path is relative to the folder of the policy file.",
			written, resolved, capitalize(unwrapPathError(err).Error())))
}

func errInputFileTooLarge(subject hcl2.Range, resolved string) *hcl2.Diagnostic {
	return newError(subject, "Test input too large",
		fmt.Sprintf("The functional test input\n%s\nis larger than %d bytes. The probe sends it to every device at every interval: use a small representative input.", resolved, maxInputFileSize))
}

func errInputNotJSON(subject hcl2.Range, probe string, err error) *hcl2.Diagnostic {
	return newError(subject, "Test input is not JSON",
		fmt.Sprintf("The %s probe sends its input as a JSON request body, and this input is not valid JSON (%s). Let jsonencode write it, for example: input = jsonencode({ image = \"cat.jpg\" }).", probe, err))
}

func errEmptyExpect(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Empty expect",
		"expect lists the fields the answer must contain and their values; an empty one checks nothing. For example: expect = { label = \"cat\" }.")
}

// ---- offline -------------------------------------------------------------

func warnCatchUpOff(subject hcl2.Range) *hcl2.Diagnostic {
	return newWarning(subject, "Offline devices never caught up",
		"With catch_up = false, devices that are offline during the rollout keep the old version when they come back, and the fleet stays split. Keep catch_up = true: returning devices then go through the same gates as the waves.")
}

// ---- examples and reasons used by the messages ---------------------------

// exampleFor returns a correct line for an attribute, preferring the one
// specific to its block.
func exampleFor(block, name string) string {
	if e, ok := attrExamples[block+"."+name]; ok {
		return e
	}
	return attrExamples[name]
}

// attrExamples shows a correct line for each attribute (or "block.attribute"
// where blocks differ), used by the messages about a missing or mistyped
// value.
var attrExamples = map[string]string{
	"canary.percent":                   `percent = 2`,
	"functional.path":                  `path = "/infer"`,
	"metrics.path":                     `path = "/metrics"`,
	"metrics.format":                   `format = "prometheus"`,
	"metrics.requests":                 `requests = "http_requests_total"`,
	"metrics.errors":                   `errors = "http_requests_total{code=~\"5..\"}"`,
	"metrics.latency":                  `latency = "http_request_duration_seconds"`,
	"functional.interval":              `interval = "30s"`,
	"strategy":                         `strategy = "canary-rolling"`,
	"max_parallel":                     `max_parallel = 10`,
	"selector":                         `selector = "Meta.fleet == \"vision\""`,
	"datacenters":                      `datacenters = ["dc1"]`,
	"jobspec":                          `jobspec = "detector.nomad.hcl"`,
	"version":                          `version = "2.4.1"`,
	"env":                              `env = { LOG_LEVEL = "info" }`,
	"percent":                          `percent = 10`,
	"min_per_class":                    `min_per_class = 1`,
	"soak":                             `soak = "10m"`,
	"approval":                         `approval = "manual"`,
	"grace":                            `grace = "30s"`,
	"heartbeat_timeout":                `heartbeat_timeout = "30s"`,
	"max_cpu_percent":                  `max_cpu_percent = 90`,
	"max_memory_percent":               `max_memory_percent = 90`,
	"max_disk_percent":                 `max_disk_percent = 95`,
	"max_temperature_c":                `max_temperature_c = 85`,
	"port":                             `port = "http"`,
	"path":                             `path = "/health"`,
	"interval":                         `interval = "5s"`,
	"timeout":                          `timeout = "2s"`,
	"expect_version":                   `expect_version = true`,
	"max_restarts":                     `max_restarts = 3`,
	"probe":                            `probe = "http-json"`,
	"input":                            `input = jsonencode({ image = "cat.jpg" })`,
	"input_file":                       `input_file = "testdata/cat.json"`,
	"expect":                           `expect = { label = "cat" }`,
	"max_latency":                      `max_latency = "250ms"`,
	"max_failure_percent":              `max_failure_percent = 2`,
	"max_error_rate":                   `max_error_rate = 0.02`,
	"max_p95_latency_increase_percent": `max_p95_latency_increase_percent = 20`,
	"max_offline_after_switch_percent": `max_offline_after_switch_percent = 5`,
	"command":                          `command = "infer-selftest"`,
	"args":                             `args = ["--model", "yolo"]`,
	"scope":                            `scope = "wave"`,
	"catch_up":                         `catch_up = true`,
	"max_offline_percent":              `max_offline_percent = 20`,
	"url":                              `url = "https://hooks.example.com/fleet"`,
	"headers":                          `headers = { Authorization = "Bearer ${env.OPS_HOOK_TOKEN}" }`,
	"events":                           `events = ["approval-needed", "rollback", "halted", "done"]`,
	"level":                            `level = "info"`,
	"notify.timeout":                   `timeout = "30s"`,
	"duration":                         `duration = "10m"`,
	"promote_if":                       `promote_if = "not-worse"`,
	"confidence":                       `confidence = 0.95`,
	"min_requests":                     `min_requests = 30`,
	"min_samples":                      `min_samples = 8`,
	"error_rate":                       `error_rate = 0.01`,
	"p95_latency_percent":              `p95_latency_percent = 10`,
	"probe_failure_rate":               `probe_failure_rate = 0.01`,
}

// requiredWhy says why a required attribute is needed, keyed by
// "block.attribute".
var requiredWhy = map[string]string{
	"fleet.selector":               "it picks the devices the rollout covers, as a Nomad node filter expression.",
	"release.jobspec":              "it is the application's Nomad job, which fleetplan compiles into the two slot jobs; the path is relative to the policy file.",
	"release.version":              "it is the version being rolled out, which the application must report on its health endpoint.",
	"canary.percent":               "it is the share of the fleet, 1 to 5 %, that gets the new version first.",
	"canary.soak":                  "it is how long the canary runs, with health watched, before its gate decides.",
	"wave.percent":                 "it is the cumulative share of the fleet that runs the new version once the wave is through.",
	"wave.soak":                    "it is how long the wave runs, with health watched, before its gate decides whether the next wave may start.",
	"rollback.max_failure_percent": "it is the share of the devices a wave attempted that may fail before fleetplan rolls back by itself.",
	"functional.probe":             "it names the probe plugin that sends the test input.",
	"notify.url":                   "it is where the notifications are POSTed. Keep a secret URL out of the policy with a reference: url = env.SLACK_WEBHOOK_URL or url = nomad_var(\"fleetplan/notify\", \"slack_url\").",
	"functional.expect":            "it is what the answer to the test input must contain; without it the probe checks nothing.",
	"functional.command":           "with probe = \"exec\" it names the check program to run, an entry of the allow-list in the device agent's own configuration (never a command line: the policy reaches the devices through Consul KV).",
}

// ---- health.application.metrics -------------------------------------------

func errMetricsSelectorNeedsPrometheus(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Series selector without the prometheus format",
		fmt.Sprintf("%s names a Prometheus series, but the metrics format is json (the default), whose record has fixed fields. Add format = \"prometheus\" to the metrics block, or remove %s.", name, name))
}

func errMetricsSelector(subject hcl2.Range, name string, err error) *hcl2.Diagnostic {
	return newError(subject, "Invalid series selector",
		fmt.Sprintf("%s: %v. Write a metric name, optionally with label matchers, for example %s = \"http_requests_total{code=~\\\"5..\\\"}\".", name, err, name))
}

func errMetricsErrorsWithoutRequests(subject hcl2.Range, requestsMissing bool) *hcl2.Diagnostic {
	if requestsMissing {
		return newError(subject, "Missing requests counter",
			"The error rate is errors / requests over the same interval: with errors set, also set requests, for example requests = \"http_requests_total\".")
	}
	return newError(subject, "Missing errors counter",
		"The error rate is errors / requests over the same interval: with requests set, also set errors, for example errors = \"http_requests_total{code=~\\\"5..\\\"}\".")
}

func errMetricsNothingMapped(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Prometheus metrics without a mapping",
		"With format = \"prometheus\" the agent needs to know which series to read: set requests and errors (counters, for the error rate) and/or latency (a histogram, for p95), for example requests = \"http_requests_total\", errors = \"http_requests_total{code=~\\\"5..\\\"}\", latency = \"http_request_duration_seconds\".")
}
