package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/plugin"
)

// Handler serves the endpoints: /v1/health and the probe endpoints Consul's
// checks call to anyone (each probe runs at most once per ProbeMinAge for a
// given query, probeCache), /v1/metrics and /v1/status only to callers with
// the agent's token (requireToken). No check definition carries a secret
// (invariant I11).
func (a *Agent) Handler() http.Handler {
	probes := http.NewServeMux()
	probes.HandleFunc("GET "+PathConnectivity, a.handleConnectivity)
	probes.HandleFunc("GET "+PathSystem, a.handleSystem)
	probes.HandleFunc("GET "+PathApplication, a.handleApplication)
	probes.HandleFunc("GET "+PathFunctional, a.handleFunctional)
	cached := a.probes.wrap(probes)

	private := http.NewServeMux()
	private.HandleFunc("GET "+PathMetrics, a.handleMetrics)
	private.HandleFunc("GET "+PathStatus, a.handleStatus)

	mux := http.NewServeMux()
	for _, p := range []string{PathConnectivity, PathSystem, PathApplication, PathFunctional} {
		mux.Handle(p, cached)
	}
	mux.Handle("GET "+PathPrometheus, a.metrics.handler())
	mux.HandleFunc("GET "+PathHealth, func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.Handle("/", requireToken(a.cfg.Token, private))
	return mux
}

// probeCtx bounds a probe a little under the Consul check's timeout, so
// that the probe's own words, not Consul's timeout, reach the output.
func (a *Agent) probeCtx(r *http.Request, timeout time.Duration) (context.Context, context.CancelFunc) {
	d := timeout - timeout/5
	if d < 500*time.Millisecond {
		d = 500 * time.Millisecond
	}
	return context.WithTimeout(r.Context(), d)
}

// waitReady holds a probe until the first reconciliation.
func (a *Agent) waitReady(w http.ResponseWriter, r *http.Request) bool {
	select {
	case <-a.ready:
		return true
	case <-r.Context().Done():
		return false
	case <-time.After(a.cfg.CheckTimeout):
		writeText(w, http.StatusServiceUnavailable, "critical: the fleetplan agent is starting and has not read its device's services yet\n")
		return false
	}
}

func (a *Agent) snapshot() (map[string]*AppConfig, map[string]Instance) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.configs, a.instances
}

func (a *Agent) handleConnectivity(w http.ResponseWriter, r *http.Request) {
	configs, insts := a.snapshot()
	hb := StrictestHeartbeatTimeout(relevantApps(slices.Collect(maps.Values(insts)), configs))
	ctx, cancel := a.probeCtx(r, a.cfg.CheckTimeout)
	defer cancel()
	st := readNomadClient(ctx, a.nomad, a.nodeSt, a.now)
	status, out := ConnectivityVerdict(st, a.cfg.NomadAddr, hb)
	a.metrics.probe(r.URL.Path, 1, status)
	writeText(w, HTTPStatus(status), out)
}

func (a *Agent) handleSystem(w http.ResponseWriter, r *http.Request) {
	configs, insts := a.snapshot()
	t := strictestThresholds(relevantApps(slices.Collect(maps.Values(insts)), configs), a.cfg.Defaults)
	status, out := SystemVerdict(a.sys.Sample(), t)
	a.layerVerdict(r, 2, "", contract.LayerSystem, status, out)
	writeText(w, HTTPStatus(status), out)
}

// instanceFor finds the instance of a probe request, or answers 503.
func (a *Agent) instanceFor(w http.ResponseWriter, r *http.Request) (Instance, *AppConfig, bool) {
	if !a.waitReady(w, r) {
		return Instance{}, nil, false
	}
	id := r.URL.Query().Get("service")
	configs, insts := a.snapshot()
	in, ok := insts[id]
	if !ok {
		writeText(w, http.StatusServiceUnavailable, oneLine(fmt.Sprintf("critical: no fleetplan-managed service instance %q on node %s (the agent removes this check)", id, a.nodeName()))+"\n")
		return Instance{}, nil, false
	}
	return in, configs[in.App], true
}

func (a *Agent) handleApplication(w http.ResponseWriter, r *http.Request) {
	in, cfg, ok := a.instanceFor(w, r)
	if !ok {
		return
	}
	input := ApplicationInput{Instance: in, HealthPath: DefaultHealthPath, ExpectVersion: true}
	fetch := DefaultFetchTimeout
	var mc MetricsConfig
	if cfg != nil {
		input.HealthPath, input.ExpectVersion = cfg.HealthPath, cfg.ExpectVersion
		if cfg.Timeout > 0 {
			fetch = cfg.Timeout.D()
		}
		if cfg.Metrics != nil {
			mc = *cfg.Metrics
		}
	}
	sys := a.sys.Sample()
	ctx, cancel := a.probeCtx(r, applicationCheckTimeout(fetch))
	defer cancel()
	status, out := a.app.ProbeApplication(ctx, input, fetch)

	// The measurement: the device's figures, then the application's.
	now := a.now()
	m := contract.Metrics{}
	if sys.CPUKnown {
		m.CPUPercent = ptr(round1(sys.CPUPercent))
	}
	if sys.MemTotalKB > 0 {
		m.MemoryPercent = ptr(round1(sys.MemoryPercent))
	}
	mctx, mcancel := context.WithTimeout(ctx, fetch)
	why := a.fetchReading(mctx, in, mc, &m, now)
	mcancel()
	rd := reading{at: now, m: m, why: why}
	if sys.TempKnown {
		rd.tempC = ptr(round1(sys.TemperatureC))
	}
	cur, base, baseVersion, trend := a.meas.record(in, rd)
	fs := judgeTriggers(triggerInput{cfg: cfg, node: a.nodeName(), cur: cur, why: why, base: base, baseVersion: baseVersion, trend: trend, now: now},
		func(metric string, crossed bool) int { return a.meas.trendHit(in.ServiceID, metric, crossed) })
	hasL4 := cfg != nil && cfg.Functional != nil && cfg.Functional.Probe != ""
	l3, l4 := splitFindings(fs, hasL4)
	a.meas.setLatencyFindings(in.ServiceID, l4)
	status, out = withFindings(status, out, l3)
	a.layerVerdict(r, 3, in.ServiceID, contract.LayerApplication, status, out)
	writeText(w, HTTPStatus(status), out)
}

// layerVerdict records a check's verdict: the agent's metrics, and the
// instance's layer status for its summary (a status change asks for a
// summary).
func (a *Agent) layerVerdict(r *http.Request, layer int, serviceID, name string, status plugin.Status, out string) {
	a.metrics.probe(r.URL.Path+"?"+r.URL.RawQuery, layer, status)
	reason, _, _ := strings.Cut(out, "\n")
	if _, rest, ok := strings.Cut(reason, ": "); ok {
		reason = rest
	}
	if len(reason) > maxReason {
		reason = reason[:maxReason] + "..."
	}
	ls := contract.LayerStatus{Status: string(status), Reason: reason}
	if serviceID == "" {
		if a.meas.setSystem(ls) {
			for _, app := range a.meas.apps() {
				a.statusChanged(app)
			}
		}
		return
	}
	if app, changed := a.meas.setLayer(serviceID, name, ls); changed {
		a.statusChanged(app)
	}
}

// maxReason bounds a layer's reason in a summary.
const maxReason = 300

func (a *Agent) handleFunctional(w http.ResponseWriter, r *http.Request) {
	in, cfg, ok := a.instanceFor(w, r)
	if !ok {
		return
	}
	if cfg == nil || cfg.Functional == nil || cfg.Functional.Probe == "" {
		writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("critical: application %s has no functional block (the agent removes this check)\n", in.App))
		return
	}
	// Within the Consul check's timeout (probe time + 1 s), past the
	// probe's own limit, so that the probe's words reach the output.
	ctx, cancel := context.WithTimeout(r.Context(), a.fn.allow.checkTimeout(cfg.Functional)-250*time.Millisecond)
	defer cancel()
	status, out := a.fn.ProbeFunctional(ctx, in, a.nodeName(), cfg.Functional)
	a.meas.probeRun(in, a.now(), status == Passing)
	// The latency triggers the layer 3 probe judged on the metrics.
	status, out = withFindings(status, out, a.meas.latencyFindings(in.ServiceID))
	a.layerVerdict(r, 4, in.ServiceID, contract.LayerFunctional, status, out)
	writeText(w, HTTPStatus(status), out)
}

// MetricsReport is what /v1/metrics answers: the device, and the instance
// when ?service= names one.
type MetricsReport struct {
	Node          string    `json:"node"`
	Time          time.Time `json:"time"`
	CPUPercent    *float64  `json:"cpu_percent"`
	MemoryPercent *float64  `json:"memory_percent"`
	DiskPercent   *float64  `json:"disk_percent"`
	TemperatureC  *float64  `json:"temperature_c"`
	Service       string    `json:"service,omitempty"`
	App           string    `json:"app,omitempty"`
	Version       string    `json:"version,omitempty"`
	// Instance holds the instance's metrics record (contract.Metrics).
	Instance *contract.Metrics `json:"instance,omitempty"`
	Error    string            `json:"error,omitempty"`
}

func (a *Agent) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s := a.sys.Sample()
	rep := MetricsReport{Node: a.nodeName(), Time: s.Time.UTC()}
	if s.CPUKnown {
		rep.CPUPercent = ptr(round1(s.CPUPercent))
	}
	if s.MemTotalKB > 0 {
		rep.MemoryPercent = ptr(round1(s.MemoryPercent))
	}
	if !hasError(s.Errors, "disk:") {
		rep.DiskPercent = ptr(round1(s.DiskPercent))
	}
	if s.TempKnown {
		rep.TemperatureC = ptr(round1(s.TemperatureC))
	}
	if id := r.URL.Query().Get("service"); id != "" {
		_, insts := a.snapshot()
		in, ok := insts[id]
		if !ok {
			rep.Error = fmt.Sprintf("no fleetplan-managed service instance %q on this device", id)
		} else {
			rep.Service, rep.App, rep.Version = in.ServiceID, in.App, in.Version
			ctx, cancel := context.WithTimeout(r.Context(), DefaultFetchTimeout)
			defer cancel()
			m := contract.Metrics{CPUPercent: rep.CPUPercent, MemoryPercent: rep.MemoryPercent}
			if err := a.app.fillAppMetrics(ctx, instanceURL(in, DefaultMetricsPath), &m); err != nil {
				rep.Error = err.Error()
			}
			rep.Instance = &m
		}
	}
	writeJSONBody(w, http.StatusOK, rep)
}

// Status is what /v1/status answers.
type Status struct {
	Node      string                `json:"node"`
	Advertise string                `json:"advertise"`
	Instances []Instance            `json:"instances"`
	Apps      map[string]*AppConfig `json:"apps"`
}

func (a *Agent) handleStatus(w http.ResponseWriter, _ *http.Request) {
	configs, insts := a.snapshot()
	a.mu.RLock()
	st := Status{Node: a.node, Advertise: a.base, Apps: configs}
	a.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(insts)) {
		st.Instances = append(st.Instances, insts[id])
	}
	writeJSONBody(w, http.StatusOK, st)
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

func writeJSONBody(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
