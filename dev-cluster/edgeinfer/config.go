package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

const (
	defaultVersion     = "0.0.0-dev"
	defaultModel       = "edgeinfer-reference"
	defaultLeakMaxMB   = 512
	defaultRampMax     = 30 * time.Second
	ppmScale           = 1_000_000
	envVersionMeta     = "NOMAD_META_fleetplan_version"
	envVersionMetaUp   = "NOMAD_META_FLEETPLAN_VERSION"
	envVersion         = "EDGEINFER_VERSION"
	envAddr            = "EDGEINFER_ADDR"
	envModel           = "MODEL"
	envCrash           = "EDGEINFER_FAULT_CRASH"
	envUnhealthyAfter  = "EDGEINFER_FAULT_UNHEALTHY_AFTER"
	envDegraded        = "EDGEINFER_FAULT_DEGRADED"
	envWrongOutput     = "EDGEINFER_FAULT_WRONG_OUTPUT"
	envSlow            = "EDGEINFER_FAULT_SLOW"
	envLeakRate        = "EDGEINFER_FAULT_LEAK_MB_PER_S"
	envLeakMax         = "EDGEINFER_FAULT_LEAK_MAX_MB"
	envLatencyRamp     = "EDGEINFER_FAULT_LATENCY_RAMP"
	envLatencyRampMax  = "EDGEINFER_FAULT_LATENCY_RAMP_MAX"
	envErrorRate       = "EDGEINFER_FAULT_ERROR_RATE"
	envWrongVersion    = "EDGEINFER_FAULT_WRONG_VERSION"
	envFaultNodes      = "EDGEINFER_FAULT_NODES"
	envNode            = "EDGEINFER_NODE"
	envMetricsFormat   = "EDGEINFER_METRICS_FORMAT"
	leakChunkBytes     = 1 << 20
	inferBodyLimit     = 1 << 20
	latencyWindowSize  = 200
	inferConfidence    = 0.97
	wrongLabel         = "dog"
	wrongLabelFallback = "cat"
)

// config is everything the program reads from flags and the environment.
type config struct {
	addr    string
	version string // reported version, without build metadata
	build   string // the full version string as given
	model   string // MODEL env, "" when unset
	// prometheus: /metrics answers in the Prometheus text format, not
	// JSON (-metrics-format / EDGEINFER_METRICS_FORMAT).
	prometheus bool
	faults     faults
}

// modelName is the model /infer reports.
func (c config) modelName() string {
	if c.model != "" {
		return c.model
	}
	return defaultModel
}

// faults are the injected failure modes; the zero value injects nothing.
type faults struct {
	crash          bool
	unhealthy      bool          // EDGEINFER_FAULT_UNHEALTHY_AFTER is set
	unhealthyAfter time.Duration // uptime from which /health is unhealthy
	degraded       bool
	wrongOutput    bool
	slow           time.Duration
	rampNum        time.Duration // the ramp adds rampNum of delay ...
	rampPer        time.Duration // ... per rampPer of uptime (0: no ramp)
	rampMax        time.Duration
	errorRatePPM   uint64 // fraction of failing /infer requests, in parts per million
	leakMBPerS     float64
	leakMaxMB      int
	wrongVersion   string

	set []string // NAME=value of every fault variable given, for the start log
	// off says why the faults given are not applied on this node
	// (EDGEINFER_FAULT_NODES does not name EDGEINFER_NODE).
	off string
}

func (f faults) describe() string {
	if f.off != "" {
		return "none (" + f.off + ")"
	}
	if len(f.set) == 0 {
		return "none"
	}
	return strings.Join(f.set, " ")
}

// parseConfig reads the flags in args and the environment through getenv.
// It returns flag.ErrHelp for -h.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, bool, error) {
	var cfg config
	addrDefault := strings.TrimSpace(getenv(envAddr))
	if addrDefault == "" {
		addrDefault = defaultAddr
	}
	fs := flag.NewFlagSet("edgeinfer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.addr, "addr", addrDefault, "listen address HOST:PORT (default from "+envAddr+")")
	formatDefault := strings.TrimSpace(getenv(envMetricsFormat))
	if formatDefault == "" {
		formatDefault = "json"
	}
	format := fs.String("metrics-format", formatDefault, "format of GET /metrics: json or prometheus (default from "+envMetricsFormat+")")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	switch *format {
	case "json":
	case "prometheus":
		cfg.prometheus = true
	default:
		return cfg, false, fmt.Errorf("-metrics-format (or %s) %q: want json or prometheus", envMetricsFormat, *format)
	}
	cfg.version, cfg.build = parseVersion(getenv)
	cfg.model = strings.TrimSpace(getenv(envModel))
	f, err := parseFaults(getenv)
	if err != nil {
		return cfg, false, err
	}
	cfg.faults = f
	return cfg, *showVersion, nil
}

// parseVersion picks the version from the Nomad job meta, else
// EDGEINFER_VERSION, else the default. "2.0.0+r1" gives version "2.0.0" and
// build "2.0.0+r1".
func parseVersion(getenv func(string) string) (version, build string) {
	for _, k := range []string{envVersionMeta, envVersionMetaUp, envVersion} {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return splitBuild(v)
		}
	}
	return defaultVersion, defaultVersion
}

func splitBuild(s string) (version, build string) {
	v, _, _ := strings.Cut(s, "+")
	if v == "" {
		v = defaultVersion
	}
	return v, s
}

func parseFaults(getenv func(string) string) (faults, error) {
	f := faults{leakMaxMB: defaultLeakMaxMB, rampMax: defaultRampMax}
	var errs []string
	get := func(name string) (string, bool) {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			return "", false
		}
		f.set = append(f.set, name+"="+v)
		return v, true
	}
	fail := func(name, v string, err error) {
		errs = append(errs, fmt.Sprintf("%s=%q: %v", name, v, err))
	}
	boolVar := func(name string, dst *bool) {
		if v, ok := get(name); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				fail(name, v, fmt.Errorf("want 1/0 or true/false"))
				return
			}
			*dst = b
		}
	}
	durVar := func(name string, dst *time.Duration) bool {
		if v, ok := get(name); ok {
			d, err := parseDuration(v)
			if err != nil {
				fail(name, v, err)
				return false
			}
			*dst = d
			return true
		}
		return false
	}

	boolVar(envCrash, &f.crash)
	boolVar(envDegraded, &f.degraded)
	boolVar(envWrongOutput, &f.wrongOutput)
	f.unhealthy = durVar(envUnhealthyAfter, &f.unhealthyAfter)
	durVar(envSlow, &f.slow)
	if v, ok := get(envLatencyRamp); ok {
		num, per, err := parseRamp(v)
		if err != nil {
			fail(envLatencyRamp, v, err)
		}
		f.rampNum, f.rampPer = num, per
	}
	durVar(envLatencyRampMax, &f.rampMax)
	if v, ok := get(envErrorRate); ok {
		ppm, err := parseRate(v)
		if err != nil {
			fail(envErrorRate, v, err)
		}
		f.errorRatePPM = ppm
	}
	if v, ok := get(envLeakRate); ok {
		r, err := strconv.ParseFloat(v, 64)
		switch {
		case err != nil:
			fail(envLeakRate, v, fmt.Errorf("want a number of MiB per second"))
		case r < 0 || math.IsInf(r, 0) || math.IsNaN(r):
			fail(envLeakRate, v, fmt.Errorf("want a finite number >= 0"))
		default:
			f.leakMBPerS = r
		}
	}
	if v, ok := get(envLeakMax); ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail(envLeakMax, v, fmt.Errorf("want a whole number of MiB >= 0"))
		} else {
			f.leakMaxMB = n
		}
	}
	if v, ok := get(envWrongVersion); ok {
		f.wrongVersion = v
	}
	// EDGEINFER_FAULT_NODES limits the faults to some nodes: every value
	// is still checked above (a typo stops the program on every node), but
	// a node not in the list runs without faults.
	if v := strings.TrimSpace(getenv(envFaultNodes)); v != "" {
		node := strings.TrimSpace(getenv(envNode))
		targeted := false
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); n != "" && n == node {
				targeted = true
			}
		}
		if len(errs) == 0 && !targeted {
			if node == "" {
				node = "(unset)"
			}
			return faults{leakMaxMB: defaultLeakMaxMB, rampMax: defaultRampMax,
				off: fmt.Sprintf("%s=%s is not in %s=%s; given: %s", envNode, node, envFaultNodes, v, strings.Join(f.set, " "))}, nil
		}
		f.set = append(f.set, envFaultNodes+"="+v)
	}
	if len(errs) > 0 {
		return f, fmt.Errorf("bad fault configuration: %s", strings.Join(errs, "; "))
	}
	return f, nil
}

// parseDuration accepts Go durations ("300ms") or a plain number of seconds.
func parseDuration(v string) (time.Duration, error) {
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || math.IsNaN(secs) || secs > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("want a duration >= 0")
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 300ms or 10s")
	}
	if d < 0 {
		return 0, fmt.Errorf("want a duration >= 0")
	}
	return d, nil
}

// parseRamp parses "50ms/s": 50ms of added latency per second of uptime. The
// part after "/" is a unit (ms, s, m, h) or a duration ("10s").
func parseRamp(v string) (num, per time.Duration, err error) {
	a, b, ok := strings.Cut(v, "/")
	if !ok {
		return 0, 0, fmt.Errorf("want DELAY/PERIOD such as 50ms/s")
	}
	num, err = time.ParseDuration(strings.TrimSpace(a))
	if err != nil || num < 0 {
		return 0, 0, fmt.Errorf("want DELAY/PERIOD such as 50ms/s: bad delay %q", a)
	}
	b = strings.TrimSpace(b)
	switch b {
	case "ms":
		per = time.Millisecond
	case "s":
		per = time.Second
	case "m", "min":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = parseDuration(b)
		if err != nil {
			return 0, 0, fmt.Errorf("want DELAY/PERIOD such as 50ms/s: bad period %q", b)
		}
	}
	if per <= 0 {
		return 0, 0, fmt.Errorf("the period must be > 0")
	}
	return num, per, nil
}

// parseRate parses "0.2" or "20%" into parts per million, in [0, 1e6].
func parseRate(v string) (uint64, error) {
	s, pct := strings.CutSuffix(v, "%")
	r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(r) {
		return 0, fmt.Errorf("want a fraction such as 0.2 or a percentage such as 20%%")
	}
	if pct {
		r /= 100
	}
	if r < 0 || r > 1 {
		return 0, fmt.Errorf("want a fraction between 0 and 1")
	}
	return uint64(math.Round(r * ppmScale)), nil
}
