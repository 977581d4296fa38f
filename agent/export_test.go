package agent

// parseCheckOutput is the watcher's reading of a layer 3 check output
// (checks.ParseCheckOutput). Package checks imports this package, so the
// internal tests cannot import it: parse_link_test.go (package agent_test)
// sets it.
var parseCheckOutput func(out string) (status, version string, ok bool)

// SetParseCheckOutput lets the external test package link the watcher's
// parser into the internal tests.
func SetParseCheckOutput(f func(out string) (status, version string, ok bool)) { parseCheckOutput = f }
