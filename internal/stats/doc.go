// Package stats holds the few statistical tests fleetplan's A/B comparison
// uses, in plain Go: a two-proportion z-test and its stratified form
// (Cochran–Mantel–Haenszel) for error and probe-failure rates, and the
// Mann–Whitney U test and its stratified form (van Elteren) for latency
// samples. Every p-value is two-sided.
package stats
