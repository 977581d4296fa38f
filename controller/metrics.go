package controller

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Metrics are the controller service's Prometheus metrics (GET /metrics):
//
//	fleetplan_controller_leader                     1 while this instance leads, else 0
//	fleetplan_controller_rollouts{phase}            rollouts known to this instance, by phase
//	fleetplan_controller_rollout_phase_seconds{rollout,phase}
//	                                                time the rollout has been in its current phase
//	fleetplan_controller_device_switches_total{outcome}
//	fleetplan_controller_rollbacks_total            rollbacks decided (automatic or asked for)
//	fleetplan_controller_gate_verdicts_total{verdict}
//	fleetplan_controller_api_errors_total{api}      Nomad/Consul errors seen by the service and its runs
//	fleetplan_controller_fence_checks_total{result}
//	fleetplan_controller_fence_seconds              the time a fence check takes
//	fleetplan_controller_lock_held{rollout}         1 while this instance holds the rollout's lock
//	fleetplan_controller_sessions_reaped_total      silent leaders' sessions this standby destroyed
type Metrics struct {
	Registry *prometheus.Registry

	leader      prometheus.Gauge
	switches    *prometheus.CounterVec
	rollbacks   prometheus.Counter
	verdicts    *prometheus.CounterVec
	apiErrors   *prometheus.CounterVec
	fenceChecks *prometheus.CounterVec
	fenceTime   prometheus.Histogram
	lockHeld    *prometheus.GaugeVec
	reaped      prometheus.Counter

	mu     sync.Mutex
	phases map[string]phaseSince // rollout -> its phase and since when
	now    func() time.Time
}

type phaseSince struct {
	phase scheduler.Phase
	since time.Time
}

// NewMetrics registers the metrics in a registry of their own (with the Go
// and process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry:    prometheus.NewRegistry(),
		leader:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "fleetplan_controller_leader", Help: "1 while this controller instance is the leader, else 0."}),
		switches:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetplan_controller_device_switches_total", Help: "Device switches (and rollback switches) by outcome."}, []string{"action", "outcome"}),
		rollbacks:   prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetplan_controller_rollbacks_total", Help: "Rollbacks decided by the rollouts this instance ran."}),
		verdicts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetplan_controller_gate_verdicts_total", Help: "Stage gate verdicts."}, []string{"verdict"}),
		apiErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetplan_controller_api_errors_total", Help: "Errors of the Nomad or Consul API seen by the service and its runs."}, []string{"api"}),
		fenceChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "fleetplan_controller_fence_checks_total", Help: "Fence checks made before cluster actions and state writes, by result."}, []string{"result"}),
		fenceTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "fleetplan_controller_fence_seconds", Help: "Time a fence check takes (local lease and a consistent read of the lock keys).",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}}),
		lockHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "fleetplan_controller_lock_held", Help: "1 while this instance holds the rollout's lock."}, []string{"rollout"}),
		reaped: prometheus.NewCounter(prometheus.CounterOpts{Name: "fleetplan_controller_sessions_reaped_total",
			Help: "Sessions of silent leaders (no heartbeat for a whole TTL) this instance destroyed while standing by."}),
		phases: map[string]phaseSince{},
		now:    time.Now,
	}
	m.Registry.MustRegister(m.leader, m.switches, m.rollbacks, m.verdicts, m.apiErrors, m.fenceChecks, m.fenceTime, m.lockHeld, m.reaped,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), (*phaseCollector)(m))
	return m
}

// SetLeader records the lock state.
func (m *Metrics) SetLeader(leader bool) {
	if leader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}

// LockHeld records whether this instance holds a rollout's lock.
func (m *Metrics) LockHeld(app string, held bool) {
	if held {
		m.lockHeld.WithLabelValues(app).Set(1)
	} else {
		m.lockHeld.WithLabelValues(app).Set(0)
	}
}

// APIError counts an error of api ("nomad" or "consul").
func (m *Metrics) APIError(api string) { m.apiErrors.WithLabelValues(api).Inc() }

// Fence records one fence check.
func (m *Metrics) Fence(d time.Duration, err error) {
	res := "held"
	if err != nil {
		res = "lost"
	}
	m.fenceChecks.WithLabelValues(res).Inc()
	m.fenceTime.Observe(d.Seconds())
}

// SessionReaped counts a silent leader's session destroyed by this
// standby.
func (m *Metrics) SessionReaped() { m.reaped.Inc() }

// Phase records where a rollout is (from its state).
func (m *Metrics) Phase(app string, phase scheduler.Phase) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.phases[app]; ok && cur.phase == phase {
		return
	}
	m.phases[app] = phaseSince{phase: phase, since: m.now()}
}

// Forget drops a rollout this instance no longer follows.
func (m *Metrics) Forget(app string) {
	m.mu.Lock()
	delete(m.phases, app)
	m.mu.Unlock()
}

// Event counts what a controller event says.
func (m *Metrics) Event(e scheduler.Event) {
	if e.Phase != "" {
		m.Phase(e.Rollout, e.Phase)
	}
	switch {
	case e.Outcome == "intent":
	case e.Action == "switch" || e.Action == "rollback" || e.Action == "catch-up" || e.Action == "quarantine":
		m.switches.WithLabelValues(e.Action, e.Outcome).Inc()
	case e.Action == "decision:"+string(scheduler.DecisionRollback):
		m.rollbacks.Inc()
		m.verdicts.WithLabelValues("rollback").Inc()
	case e.Action == "decision:"+string(scheduler.DecisionGatePassed):
		m.verdicts.WithLabelValues("passed").Inc()
	case e.Action == "decision:"+string(scheduler.DecisionFailFast):
		m.verdicts.WithLabelValues("fail-fast").Inc()
	}
	if strings.Contains(e.Outcome, "control-plane") {
		m.apiErrors.WithLabelValues("cluster").Inc()
	}
}

// phaseCollector exports the rollouts by phase and the time in phase,
// computed at scrape time.
type phaseCollector Metrics

var (
	descRollouts = prometheus.NewDesc("fleetplan_controller_rollouts", "Rollouts this instance follows, by phase.", []string{"phase"}, nil)
	descInPhase  = prometheus.NewDesc("fleetplan_controller_rollout_phase_seconds", "Time the rollout has been in its current phase.", []string{"rollout", "phase"}, nil)
)

func (c *phaseCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRollouts
	ch <- descInPhase
}

func (c *phaseCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	counts := map[scheduler.Phase]int{}
	for app, p := range m.phases {
		counts[p.phase]++
		ch <- prometheus.MustNewConstMetric(descInPhase, prometheus.GaugeValue, now.Sub(p.since).Seconds(), app, string(p.phase))
	}
	for phase, n := range counts {
		ch <- prometheus.MustNewConstMetric(descRollouts, prometheus.GaugeValue, float64(n), string(phase))
	}
}
