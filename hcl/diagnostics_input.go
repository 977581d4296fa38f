package hcl

import (
	"fmt"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
)

// The diagnostics about input fleetplan refuses before it acts (invariant
// I10): files above their size limit, probes it does not know or cannot
// configure from the policy. Same conventions as diagnostics.go.

// ---- file sizes ------------------------------------------------------------

// errVersionBuildMetadata reports a release version with semver build
// metadata: the version contract compares versions without it, so two
// releases differing only there could not be told apart.
func errVersionBuildMetadata(subject hcl2.Range, v string) *hcl2.Diagnostic {
	base, _, _ := strings.Cut(v, "+")
	return newError(subject, "Version with build metadata",
		fmt.Sprintf("%q carries semver build metadata (the part after \"+\"). fleetplan compares versions without it (an application may report \"%s+anything\"), so two releases that differ only there could not be told apart. Give the release a version of its own, for example %q or %q.", v, base, base, base+"-1"))
}

// errPolicyTooLarge reports a policy file above MaxPolicyFileSize. It is
// about the whole file, so it has no range (like errReadFile).
func errPolicyTooLarge(path string, e *tooLargeError) *hcl2.Diagnostic {
	return &hcl2.Diagnostic{
		Severity: hcl2.DiagError,
		Summary:  "Policy file too large",
		Detail: fmt.Sprintf("The policy file %q is %s; fleetplan reads policy files of at most %s. A policy is a few kilobytes of HCL, so a file this large is most likely not a policy (a model, a log, a binary): check the path. If it really is a policy, split its rollout blocks over several files, one per application, and give them all (or their folder).",
			path, sizeText(e.size, e.limit), bytesText(e.limit)),
	}
}

// errJobspecTooLarge reports a jobspec above MaxJobspecSize, at the
// jobspec attribute.
func errJobspecTooLarge(subject hcl2.Range, written, resolved string, size int64) *hcl2.Diagnostic {
	return newError(subject, "Jobspec too large",
		fmt.Sprintf("The jobspec %q, at\n%s\nis %s; fleetplan sends jobspecs of at most %s to the Nomad server. A Nomad job file is a few kilobytes, so check that jobspec names the job file and not a model or an archive. Keep large data out of the jobspec: let the job fetch it with an artifact block, or a template with a source file, instead of writing it inline.",
			written, resolved, sizeText(size, MaxJobspecSize), bytesText(MaxJobspecSize)))
}

// ---- bounds ----------------------------------------------------------------

// errMaxParallelTooHigh reports max_parallel above maxMaxParallel.
func errMaxParallelTooHigh(subject hcl2.Range, v int) *hcl2.Diagnostic {
	return rangeError(subject, "max_parallel", float64(v), 1, maxMaxParallel,
		fmt.Sprintf("it is the number of device switches in flight at once, each a Nomad metadata write and an allocation to watch. Above %d the Nomad and Consul servers take a burst they were not sized for, and a bad release reaches that many devices at once, before its stage's failure threshold can stop it. A larger fleet still moves in its waves, %d devices at a time: write max_parallel = %d or less.",
			maxMaxParallel, maxMaxParallel, maxMaxParallel))
}

// ---- probes ----------------------------------------------------------------

// probeDoes says what each built-in probe does, for the messages.
var probeDoes = map[string]string{
	"http-json": "sends the test input as a JSON request to path on the application's port and checks the answer's fields against expect",
	"tcp":       "only opens a TCP connection to the application's port",
	"exec":      "runs a check program that the device agent's own configuration allows, named by command, and judges its exit status (0 passing, 1 warning, anything else critical)",
}

// errUnknownProbe reports a probe name that is not a built-in probe.
func errUnknownProbe(subject hcl2.Range, name string, known []string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%q is not a probe fleetplan knows.", name)
	if s := suggest(name, known); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	detail += fmt.Sprintf(" The known probes are %s:", quotedList(known, "and"))
	for _, k := range known {
		if does, ok := probeDoes[k]; ok {
			detail += fmt.Sprintf("\n- %s %s;", k, does)
		}
	}
	detail = strings.TrimSuffix(detail, ";") + ".\nFor example: " + exampleFor("", "probe")
	return newError(subject, "Unknown probe", detail)
}

// errProbeAttribute reports a functional attribute the probe does not use,
// at its name. accepted are the attributes the probe takes; others the
// probes that would use this one.
func errProbeAttribute(subject hcl2.Range, name, probe string, accepted, others []string) *hcl2.Diagnostic {
	does := probeDoes[probe]
	if does == "" {
		does = "is configured differently"
	}
	detail := fmt.Sprintf("The %s probe %s; it does not use %s. Remove %s", probe, does, name, name)
	if len(others) > 0 {
		detail += fmt.Sprintf(", or set probe = %s if that is the check you meant", quotedList(others, "or"))
	}
	detail += fmt.Sprintf(". With probe = %q the functional block takes %s.", probe, joinList(accepted, "and"))
	return newError(subject, fmt.Sprintf("Argument %q not used by the %s probe", name, probe), detail)
}

// errExecCommandName reports an exec command that is not an allow-list
// name (a path, a command line).
func errExecCommandName(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Invalid command name",
		fmt.Sprintf("%q is not a command name. command names an entry of the allow-list in each device agent's own configuration, which maps it to the program to run: the policy reaches the devices through Consul KV, so a program or command line written here is never run. Use 1 to 64 letters, digits, \".\", \"_\" or \"-\", for example %s, and add that entry to the agents' configuration.",
			name, exampleFor("", "command")))
}

// errExecArgs reports an unusable args list: too many items (item < 0) or
// one item that is not an argument a program can receive.
func errExecArgs(subject hcl2.Range, n, item int, problem string) *hcl2.Diagnostic {
	if item < 0 {
		return newError(subject, "Too many args",
			fmt.Sprintf("args has %d items; an exec probe takes at most %d. Put fixed arguments in the command's entry of the device agent's allow-list and keep only what differs per application here, for example %s.",
				n, maxExecArgs, exampleFor("", "args")))
	}
	return newError(subject, "Invalid args",
		fmt.Sprintf("Item %d of args %s. Write each argument as a plain string, for example %s.", item+1, problem, exampleFor("", "args")))
}
