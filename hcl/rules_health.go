package hcl

import (
	"path/filepath"
	"slices"
	"strings"
	"time"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Defaults the scheduler package has no constant for.
const (
	defaultHealthPath       = "/health"
	defaultHealthPort       = "http"
	defaultHealthInterval   = 5 * time.Second
	defaultHealthTimeout    = 2 * time.Second
	defaultHeartbeatTimeout = 30 * time.Second
)

func (d *decoder) health(b *hcl2.Block, p *scheduler.Policy) scheduler.Health {
	c := d.content(b.Body, healthSpec)
	h := scheduler.Health{
		Grace:        scheduler.DefaultGrace,
		Connectivity: scheduler.Connectivity{HeartbeatTimeout: defaultHeartbeatTimeout},
		Range:        b.DefRange,
	}
	if a := c.Attributes["grace"]; a != nil {
		if g, ok := d.duration(a); ok {
			if g < 0 {
				d.add(errDurationNegative(a.Expr.Range(), "grace", g))
			} else {
				h.Grace = g
			}
		}
	}
	blocks := blocksOf(c)
	if cb := single(blocks, "connectivity"); cb != nil {
		cc := d.content(cb.Body, connectivitySpec)
		if a := cc.Attributes["heartbeat_timeout"]; a != nil {
			h.Connectivity.HeartbeatTimeout = d.positiveDuration(a, "connectivity", defaultHeartbeatTimeout)
		}
	}
	if sb := single(blocks, "system"); sb != nil {
		h.System = d.system(sb)
	}
	if ab := single(blocks, "application"); ab != nil {
		h.Application = d.application(ab, p)
	} else {
		d.add(errMissingBlock(b.DefRange, "health", "application"))
	}
	if fb := single(blocks, "functional"); fb != nil {
		h.Functional = d.functional(fb)
	}
	return h
}

func (d *decoder) system(b *hcl2.Block) *scheduler.SystemHealth {
	c := d.content(b.Body, systemSpec)
	s := &scheduler.SystemHealth{Range: b.DefRange}
	if a := c.Attributes["max_cpu_percent"]; a != nil {
		s.MaxCPUPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_memory_percent"]; a != nil {
		s.MaxMemoryPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_disk_percent"]; a != nil {
		s.MaxDiskPercent = d.percent(a, "system", 0, 100)
	}
	if a := c.Attributes["max_temperature_c"]; a != nil {
		if v, ok := d.number(a); ok {
			switch {
			case v < 0 || v > 150:
				d.add(errTemperature(a.Expr.Range(), v))
			case v > 0 && v < 40:
				d.add(warnLowTemperature(a.Expr.Range(), v))
				s.MaxTemperatureC = v
			default:
				s.MaxTemperatureC = v
			}
		}
	}
	return s
}

func (d *decoder) application(b *hcl2.Block, p *scheduler.Policy) scheduler.Application {
	c := d.content(b.Body, applicationSpec)
	app := scheduler.Application{
		Port:          defaultHealthPort,
		Path:          defaultHealthPath,
		Interval:      defaultHealthInterval,
		Timeout:       defaultHealthTimeout,
		ExpectVersion: true,
		MaxRestarts:   scheduler.DefaultMaxRestarts,
		Range:         b.DefRange,
	}
	portRange := b.DefRange
	portOK := true
	if a := c.Attributes["port"]; a != nil {
		portRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if strings.TrimSpace(s) == "" || strings.ContainsFunc(s, isSpace) {
				d.add(errPortLabel(a.Expr.Range(), s))
				portOK = false
			} else {
				app.Port = s
			}
		} else {
			portOK = false
		}
	}
	if a := c.Attributes["path"]; a != nil {
		if s, ok := d.str(a); ok {
			if !strings.HasPrefix(s, "/") {
				d.add(errHealthPath(a.Expr.Range(), "path", s))
			} else {
				app.Path = s
			}
		}
	}
	var intervalA, timeoutA *hcl2.Attribute
	if a := c.Attributes["interval"]; a != nil {
		intervalA = a
		app.Interval = d.positiveDuration(a, "application", defaultHealthInterval)
	}
	if a := c.Attributes["timeout"]; a != nil {
		timeoutA = a
		app.Timeout = d.positiveDuration(a, "application", defaultHealthTimeout)
	}
	for _, a := range []*hcl2.Attribute{intervalA, timeoutA} {
		v := app.Interval
		if a == timeoutA {
			v = app.Timeout
		}
		if a != nil && v > 0 && v < time.Second {
			d.add(errCheckBelowOneSecond(a.Expr.Range(), a.Name, v))
		}
	}
	if (intervalA != nil || timeoutA != nil) && app.Timeout >= app.Interval {
		r := b.DefRange
		if timeoutA != nil {
			r = timeoutA.Expr.Range()
		} else if intervalA != nil {
			r = intervalA.Expr.Range()
		}
		d.add(warnTimeoutNotBelowInterval(r, app.Timeout, app.Interval))
	}
	if a := c.Attributes["expect_version"]; a != nil {
		if v, ok := d.boolean(a); ok {
			app.ExpectVersion = v
			if !v {
				d.add(warnExpectVersionOff(a.Expr.Range()))
			}
		}
	}
	if a := c.Attributes["max_restarts"]; a != nil {
		if n, ok := d.integer(a); ok {
			if n < 0 {
				d.add(errIntRange(a.Expr.Range(), "application", "max_restarts", n, 0))
			} else {
				app.MaxRestarts = n
			}
		}
	}
	if mb := single(blocksOf(c), "metrics"); mb != nil {
		app.Metrics = d.appMetrics(mb)
	}
	if portOK && d.jobPortsOK && !slices.Contains(d.jobPorts, app.Port) {
		d.add(warnPortNotInJobspec(portRange, app.Port, filepath.Base(p.Release.Jobspec), d.jobPorts))
	}
	return app
}

// appMetrics decodes health.application.metrics: where the device agent
// reads the application's metrics, and (format "prometheus") which series
// give the requests, the errors and the latency histogram.
func (d *decoder) appMetrics(b *hcl2.Block) *scheduler.AppMetrics {
	c := d.content(b.Body, appMetricsSpec)
	m := &scheduler.AppMetrics{Path: "/metrics", Format: "json", Range: b.DefRange}
	if a := c.Attributes["path"]; a != nil {
		if s, ok := d.str(a); ok {
			if !strings.HasPrefix(s, "/") {
				d.add(errHealthPath(a.Expr.Range(), "metrics path", s))
			} else {
				m.Path = s
			}
		}
	}
	formatRange := b.DefRange
	if a := c.Attributes["format"]; a != nil {
		formatRange = a.Expr.Range()
		if s, ok := d.str(a); ok {
			if s != "json" && s != "prometheus" {
				d.add(errUnknownEnum(a.Expr.Range(), "metrics format", s, []string{"json", "prometheus"}))
			} else {
				m.Format = s
			}
		}
	}
	sels := map[string]*string{"requests": &m.Requests, "errors": &m.Errors, "latency": &m.Latency}
	written := map[string]bool{}
	for _, name := range []string{"requests", "errors", "latency"} {
		a := c.Attributes[name]
		if a == nil {
			continue
		}
		written[name] = true
		s, ok := d.str(a)
		if !ok {
			continue
		}
		if m.Format != "prometheus" {
			d.add(errMetricsSelectorNeedsPrometheus(a.Expr.Range(), name))
			continue
		}
		if _, err := contract.ParseSelector(s); err != nil {
			d.add(errMetricsSelector(a.Expr.Range(), name, err))
			continue
		}
		*sels[name] = s
	}
	if m.Format == "prometheus" {
		switch {
		case written["errors"] != written["requests"]:
			d.add(errMetricsErrorsWithoutRequests(formatRange, !written["requests"]))
		case !written["requests"] && !written["latency"]:
			d.add(errMetricsNothingMapped(formatRange))
		}
	}
	return m
}
