package agent

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fleetplan/fleetplan/plugin"
)

// PathPrometheus is where the agent serves its own metrics in the
// Prometheus text format (no token: counters only, no secret).
const PathPrometheus = "/metrics"

// agentMetrics are the agent's own Prometheus metrics, on a registry of
// its own (one per Agent).
type agentMetrics struct {
	reg       *prometheus.Registry
	probes    *prometheus.CounterVec
	checks    *prometheus.GaugeVec
	summaries *prometheus.CounterVec
	consulErr *prometheus.CounterVec
	scrapes   *prometheus.CounterVec

	mu     sync.Mutex
	status map[string]checkState // probe key -> last verdict
}

type checkState struct {
	layer  int
	status plugin.Status
}

func newAgentMetrics() *agentMetrics {
	m := &agentMetrics{
		reg: prometheus.NewRegistry(),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetplan_agent_probes_total",
			Help: "Probes the agent ran for its Consul checks, by layer and verdict.",
		}, []string{"layer", "status"}),
		checks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "fleetplan_agent_checks",
			Help: "The agent's checks by layer and current status.",
		}, []string{"layer", "status"}),
		summaries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetplan_agent_summary_writes_total",
			Help: "Device summaries written to Consul KV, by cause (request or status) and result (ok or error).",
		}, []string{"cause", "result"}),
		consulErr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetplan_agent_consul_errors_total",
			Help: "Failed requests to Consul (KV reads and writes, check and service registrations), by operation.",
		}, []string{"op"}),
		scrapes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetplan_agent_app_metrics_reads_total",
			Help: "Reads of the applications' metrics endpoints, by format and result.",
		}, []string{"format", "result"}),
		status: map[string]checkState{},
	}
	m.reg.MustRegister(m.probes, m.checks, m.summaries, m.consulErr, m.scrapes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, l := range []string{"1", "2", "3", "4"} {
		for _, s := range []plugin.Status{Passing, Warning, Critical} {
			m.checks.WithLabelValues(l, string(s)).Set(0)
		}
	}
	return m
}

func (m *agentMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// probe counts a probe run and keeps the check's current status (key
// names the check: the probe path and query).
func (m *agentMetrics) probe(key string, layer int, st plugin.Status) {
	l := strconv.Itoa(layer)
	m.probes.WithLabelValues(l, string(st)).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.status[key] = checkState{layer: layer, status: st}
	m.recount()
}

// forget drops the checks keep rejects from the status gauge.
func (m *agentMetrics) forget(keep func(key string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.status {
		if !keep(k) {
			delete(m.status, k)
		}
	}
	m.recount()
}

// recount sets the gauge from the statuses; callers hold mu.
func (m *agentMetrics) recount() {
	counts := map[[2]string]float64{}
	for _, c := range m.status {
		counts[[2]string{strconv.Itoa(c.layer), string(c.status)}]++
	}
	for _, l := range []string{"1", "2", "3", "4"} {
		for _, s := range []plugin.Status{Passing, Warning, Critical} {
			m.checks.WithLabelValues(l, string(s)).Set(counts[[2]string{l, string(s)}])
		}
	}
}

func (m *agentMetrics) summary(cause string, err error) {
	m.summaries.WithLabelValues(cause, result(err)).Inc()
	if err != nil {
		m.consulErr.WithLabelValues("kv_put").Inc()
	}
}

func (m *agentMetrics) consulError(op string) { m.consulErr.WithLabelValues(op).Inc() }

func (m *agentMetrics) appScrape(format string, err error) {
	m.scrapes.WithLabelValues(format, result(err)).Inc()
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}
