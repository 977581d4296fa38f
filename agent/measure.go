package agent

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Bounds of what the agent remembers per instance.
const (
	// maxScrapes is how many Prometheus scrapes the error rate and the
	// latency percentiles span (the newest against the oldest).
	maxScrapes = 6
	// maxTrend bounds each metric's trend samples (the newest are kept).
	maxTrend = 64
	// maxVersions bounds the versions remembered per application for the
	// baselines.
	maxVersions = 4
)

// reading is one measurement of an instance, what a probe fetched.
type reading struct {
	at time.Time
	// m holds the current figures (error rate and p95 over the last
	// scrapes for Prometheus; as reported for JSON).
	m contract.Metrics
	// why says why the application's figures are missing.
	why missing
	// temperature of the device, when known.
	tempC *float64
}

// promPoint is one Prometheus scrape.
type promPoint struct {
	at time.Time
	s  promScrape
}

// instState is what the agent remembers of one instance.
type instState struct {
	inst  Instance
	first time.Time
	last  time.Time
	// cur is the latest measurement.
	cur     contract.Metrics
	curTemp *float64
	// Prometheus scrapes, oldest first, and the last rates computed
	// (kept while no new request arrives: no new requests, no new
	// evidence).
	scrapes []promPoint
	errRate *float64
	p95     *float64
	p50     *float64
	// JSON: the previous requests_total, for the window's deltas.
	prevRequests *float64
	// Trend samples (newest last).
	mem, lat, cpu, temp []scheduler.Sample
	// trendHits counts consecutive measurements that projected a metric
	// past its limit.
	trendHits map[string]int
	// The pre-switch baseline: the last measurement of another version of
	// the application on this device, taken when this instance was first
	// measured.
	baseline        *contract.Metrics
	baselineVersion string
	win             window
	layers          map[string]contract.LayerStatus
	// latency are the latency findings of the last measurement, for the
	// functional check.
	latency []finding
}

// window accumulates a summary window.
type window struct {
	since             time.Time
	samples           int
	requests, errors  float64
	hasReq, hasErr    bool
	latency           []float64
	buckets           []bucket
	scale             float64
	probeOK, probeTot int
	cpu, mem, rss     float64
	cpuN, memN, rssN  int
}

func newWindow(at time.Time) window { return window{since: at} }

// versionReading is the last measurement of a version of an application.
type versionReading struct {
	at time.Time
	m  contract.Metrics
}

// measurements is the agent's memory of its instances' figures.
type measurements struct {
	mu    sync.Mutex
	insts map[string]*instState // by service ID
	// versions: application -> version -> last measurement.
	versions map[string]map[string]versionReading
	// system is the layer 2 verdict of the device.
	system contract.LayerStatus
}

func newMeasurements() *measurements {
	return &measurements{insts: map[string]*instState{}, versions: map[string]map[string]versionReading{}}
}

// state returns the instance's state, making it (with its baseline) on
// first sight. Callers hold mu.
func (ms *measurements) state(in Instance, now time.Time) *instState {
	st := ms.insts[in.ServiceID]
	if st != nil {
		st.inst = in
		return st
	}
	st = &instState{inst: in, first: now, win: newWindow(now), trendHits: map[string]int{}, layers: map[string]contract.LayerStatus{}}
	var best versionReading
	for v, r := range ms.versions[in.App] {
		if v != in.Version && r.at.After(best.at) {
			best = r
			st.baselineVersion = v
		}
	}
	if st.baselineVersion != "" {
		b := best.m
		st.baseline = &b
	}
	ms.insts[in.ServiceID] = st
	return st
}

// forget drops the instances no longer on the device and returns their
// applications (whose summary may now speak for another instance).
func (ms *measurements) forget(keep func(serviceID string) bool) []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var apps []string
	for id, s := range ms.insts {
		if !keep(id) {
			delete(ms.insts, id)
			if !slices.Contains(apps, s.inst.App) {
				apps = append(apps, s.inst.App)
			}
		}
	}
	return apps
}

// record adds a measurement of an instance and returns the state's
// current figures and baseline (copies).
func (ms *measurements) record(in Instance, r reading) (cur contract.Metrics, base *contract.Metrics, baseVersion string, st instSnapshot) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.state(in, r.at)
	s.last = r.at
	s.cur = r.m
	s.curTemp = r.tempC
	push := func(xs []scheduler.Sample, v *float64) []scheduler.Sample {
		if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) || *v <= 0 {
			return xs
		}
		xs = append(xs, scheduler.Sample{At: r.at, Value: *v})
		if len(xs) > maxTrend {
			xs = slices.Delete(xs, 0, len(xs)-maxTrend)
		}
		return xs
	}
	s.mem = push(s.mem, r.m.RSSMB)
	s.lat = push(s.lat, r.m.P95LatencyMS)
	s.cpu = push(s.cpu, r.m.CPUPercent)
	s.temp = push(s.temp, r.tempC)

	w := &s.win
	w.samples++
	if v := r.m.P95LatencyMS; v != nil {
		w.latency = append(w.latency, *v)
		if len(w.latency) > contract.MaxWindowSamples {
			w.latency = slices.Delete(w.latency, 0, len(w.latency)-contract.MaxWindowSamples)
		}
	}
	add := func(sum *float64, n *int, v *float64) {
		if v != nil && !math.IsNaN(*v) && !math.IsInf(*v, 0) {
			*sum += *v
			*n++
		}
	}
	add(&w.cpu, &w.cpuN, r.m.CPUPercent)
	add(&w.mem, &w.memN, r.m.MemoryPercent)
	add(&w.rss, &w.rssN, r.m.RSSMB)

	if r.m.Measured() {
		vs := ms.versions[in.App]
		if vs == nil {
			vs = map[string]versionReading{}
			ms.versions[in.App] = vs
		}
		vs[in.Version] = versionReading{at: r.at, m: r.m}
		for len(vs) > maxVersions {
			oldest, at := "", time.Time{}
			for v, vr := range vs {
				if oldest == "" || vr.at.Before(at) {
					oldest, at = v, vr.at
				}
			}
			delete(vs, oldest)
		}
	}
	if s.baseline != nil {
		b := *s.baseline
		base = &b
	}
	return s.cur, base, s.baselineVersion, s.snapshot()
}

// instSnapshot is a copy of an instance's trend samples.
type instSnapshot struct {
	mem, lat, cpu, temp []scheduler.Sample
}

func (s *instState) snapshot() instSnapshot {
	return instSnapshot{mem: slices.Clone(s.mem), lat: slices.Clone(s.lat), cpu: slices.Clone(s.cpu), temp: slices.Clone(s.temp)}
}

// trendHit counts a projection past the limit (or resets it) and returns
// the consecutive count.
func (ms *measurements) trendHit(serviceID, metric string, hit bool) int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.insts[serviceID]
	if s == nil {
		return 0
	}
	if !hit {
		delete(s.trendHits, metric)
		return 0
	}
	s.trendHits[metric]++
	return s.trendHits[metric]
}

// setLayer records a layer's verdict of an instance; changed is true when
// it differs from the previous one (sameVerdict).
func (ms *measurements) setLayer(serviceID, layer string, ls contract.LayerStatus) (app string, changed bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.insts[serviceID]
	if s == nil {
		return "", false
	}
	prev, ok := s.layers[layer]
	s.layers[layer] = ls
	return s.inst.App, !ok || !sameVerdict(prev, ls)
}

// sameVerdict reports whether two layer verdicts say the same: the same
// status and the same reason but for its numbers (a check's status does
// not change when another trigger joins the first; its reason does).
func sameVerdict(a, b contract.LayerStatus) bool {
	return a.Status == b.Status && stableKey(0, []byte(a.Reason)) == stableKey(0, []byte(b.Reason))
}

// setLatencyFindings keeps the latency findings of an instance's last
// measurement.
func (ms *measurements) setLatencyFindings(serviceID string, fs []finding) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s := ms.insts[serviceID]; s != nil {
		s.latency = fs
	}
}

// latencyFindings are the latency findings of an instance's last
// measurement.
func (ms *measurements) latencyFindings(serviceID string) []finding {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s := ms.insts[serviceID]; s != nil {
		return slices.Clone(s.latency)
	}
	return nil
}

// probeRun counts a functional probe run in the instance's window.
func (ms *measurements) probeRun(in Instance, at time.Time, ok bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.state(in, at)
	s.win.probeTot++
	if ok {
		s.win.probeOK++
	}
}

// setSystem records the device's layer 2 verdict; changed when it differs
// from the previous one (sameVerdict).
func (ms *measurements) setSystem(ls contract.LayerStatus) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	changed := !sameVerdict(ms.system, ls)
	ms.system = ls
	return changed
}

// apps are the applications with a measured instance.
func (ms *measurements) apps() []string {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var out []string
	for _, s := range ms.insts {
		if !slices.Contains(out, s.inst.App) {
			out = append(out, s.inst.App)
		}
	}
	sort.Strings(out)
	return out
}

// summary builds an application's summary from the instance that speaks
// for it (the newest: the candidate when two run); ok is false without
// one. reset starts a new window (the answer to a request).
func (ms *measurements) summary(app, node, request string, now time.Time, reset bool) (contract.Summary, bool) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	var s *instState
	for _, c := range ms.insts {
		if c.inst.App != app {
			continue
		}
		if s == nil || c.first.After(s.first) || (c.first.Equal(s.first) && c.inst.ServiceID > s.inst.ServiceID) {
			s = c
		}
	}
	if s == nil {
		return contract.Summary{}, false
	}
	out := contract.Summary{
		App: app, Node: node, Version: s.inst.Version, Slot: s.inst.Slot, AllocID: allocIDOf(s.inst.ServiceID),
		Request: request, At: now.UTC(), Since: s.win.since.UTC(),
		Layers: map[string]contract.LayerStatus{},
	}
	for k, v := range s.layers {
		out.Layers[k] = v
	}
	if ms.system.Status != "" {
		out.Layers[contract.LayerSystem] = ms.system
	}
	if !s.last.IsZero() {
		cur := s.cur
		out.Current = &cur
	}
	if s.baseline != nil {
		b := *s.baseline
		out.Baseline = &b
		out.BaselineVersion = s.baselineVersion
	}
	out.Window = s.win.export()
	if reset {
		s.win = newWindow(now)
	}
	return out, true
}

func (w window) export() *contract.Window {
	out := &contract.Window{Samples: w.samples, ProbeOK: w.probeOK, ProbeTotal: w.probeTot}
	if w.hasReq {
		out.Requests = ptr(w.requests)
	}
	if w.hasErr {
		out.Errors = ptr(math.Round(w.errors*1000) / 1000)
	}
	if len(w.latency) > 0 {
		out.LatencyMS = slices.Clone(w.latency)
	}
	if q, ok := bucketQuantile(0.5, w.buckets); ok {
		out.P50LatencyMS = ptr(round3(q * w.scale))
	} else if len(w.latency) > 0 {
		out.P50LatencyMS = ptr(nearestRank(w.latency, 0.5))
	}
	if q, ok := bucketQuantile(0.95, w.buckets); ok {
		out.P95LatencyMS = ptr(round3(q * w.scale))
	} else if len(w.latency) > 0 {
		out.P95LatencyMS = ptr(nearestRank(w.latency, 0.95))
	}
	mean := func(sum float64, n int) *float64 {
		if n == 0 {
			return nil
		}
		return ptr(round1(sum / float64(n)))
	}
	out.CPUPercent, out.MemoryPercent, out.RSSMB = mean(w.cpu, w.cpuN), mean(w.mem, w.memN), mean(w.rss, w.rssN)
	return out
}

// nearestRank is the q-quantile of xs by the nearest-rank method.
func nearestRank(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// missing says why the error rate or the latency is not measured ("":
// measured, or not asked for).
type missing struct {
	errorRate, latency string
}

func both(why string) missing { return missing{why, why} }

// fetchReading measures an instance's application metrics per its config
// into m (the device's figures are already in it); why says what is
// missing.
func (a *Agent) fetchReading(ctx context.Context, in Instance, mc MetricsConfig, m *contract.Metrics, now time.Time) missing {
	path := mc.Path
	if path == "" {
		path = DefaultMetricsPath
	}
	if err := ValidProbePath(path); err != nil {
		return both("the policy's metrics path is refused: " + err.Error())
	}
	url := instanceURL(in, path)
	if mc.Format != MetricsFormatPrometheus {
		err := a.app.fillAppMetrics(ctx, url, m)
		a.metrics.appScrape(MetricsFormatJSON, err)
		if err != nil {
			return both(err.Error())
		}
		a.meas.jsonWindow(in, m, now)
		return missing{}
	}
	mapping, err := newPromMapping(mc)
	if err != nil {
		a.metrics.appScrape(MetricsFormatPrometheus, err)
		return both(err.Error())
	}
	code, body, _, err := a.app.fetchAccept(ctx, url, promAccept)
	if err == nil && code != http.StatusOK {
		err = fmt.Errorf("HTTP %d", code)
	}
	if err != nil {
		err = fmt.Errorf("GET %s: %w", url, err)
		a.metrics.appScrape(MetricsFormatPrometheus, err)
		return both(err.Error())
	}
	sc, err := parsePrometheus(body, mapping)
	if err != nil {
		err = fmt.Errorf("GET %s: %w", url, err)
		a.metrics.appScrape(MetricsFormatPrometheus, err)
		return both(err.Error())
	}
	a.metrics.appScrape(MetricsFormatPrometheus, nil)
	if sc.rss != nil {
		m.RSSMB = ptr(round1(*sc.rss / (1 << 20)))
	}
	return a.meas.promRates(in, mapping, sc, m, now)
}

// promAccept asks for the text format (version 0.0.4).
const promAccept = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

// jsonWindow adds a JSON reading's requests to the window: the
// requests_total delta, and the errors it implies at the reported error
// rate (an estimate: the JSON record has no error counter).
func (ms *measurements) jsonWindow(in Instance, m *contract.Metrics, now time.Time) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.state(in, now)
	if m.RequestsTotal == nil {
		return
	}
	cur := *m.RequestsTotal
	if s.prevRequests != nil {
		d := counterDelta(*s.prevRequests, cur)
		s.win.requests += d
		s.win.hasReq = true
		if m.ErrorRate != nil {
			s.win.errors += d * *m.ErrorRate
			s.win.hasErr = true
		}
	}
	s.prevRequests = &cur
}

// promRates adds a scrape to the instance's ring and sets m's error rate,
// p95 latency and requests_total from it; it returns why a mapped figure
// is missing.
func (ms *measurements) promRates(in Instance, mp promMapping, sc promScrape, m *contract.Metrics, now time.Time) missing {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	s := ms.state(in, now)
	var prev *promPoint
	if n := len(s.scrapes); n > 0 {
		prev = &s.scrapes[n-1]
	}
	s.scrapes = append(s.scrapes, promPoint{at: now, s: sc})
	if len(s.scrapes) > maxScrapes {
		s.scrapes = slices.Delete(s.scrapes, 0, len(s.scrapes)-maxScrapes)
	}
	m.RequestsTotal = sc.requests

	// The window: the delta since the previous scrape.
	if prev != nil {
		w := &s.win
		if sc.requests != nil && prev.s.requests != nil {
			w.requests += counterDelta(*prev.s.requests, *sc.requests)
			w.hasReq = true
		}
		if sc.errors != nil && prev.s.errors != nil {
			w.errors += counterDelta(*prev.s.errors, *sc.errors)
			w.hasErr = true
		}
		if sc.buckets != nil && prev.s.buckets != nil {
			w.buckets = addBuckets(w.buckets, bucketDelta(prev.s.buckets, sc.buckets))
			w.scale = sc.scale
		}
	}

	// The rates over the ring (pairwise deltas, so a reset in between
	// counts from zero).
	var dReq, dErr float64
	reqOK, errOK := true, true
	var dBuckets []bucket
	for i := 1; i < len(s.scrapes); i++ {
		a, b := s.scrapes[i-1].s, s.scrapes[i].s
		if a.requests != nil && b.requests != nil {
			dReq += counterDelta(*a.requests, *b.requests)
		} else {
			reqOK = false
		}
		if a.errors != nil && b.errors != nil {
			dErr += counterDelta(*a.errors, *b.errors)
		} else {
			errOK = false
		}
		if a.buckets != nil && b.buckets != nil {
			dBuckets = addBuckets(dBuckets, bucketDelta(a.buckets, b.buckets))
		}
	}
	var why missing
	switch {
	case mp.errors == nil || mp.requests == nil:
		why.errorRate = "the policy's metrics block maps no requests and errors counters"
	case sc.requests == nil:
		s.errRate = nil
		why.errorRate = fmt.Sprintf("requests counter %s is not on the page", mp.requests)
	case sc.errors == nil:
		// A counter with no series yet is not measured either: many
		// libraries write a labelled series only once it counts.
		s.errRate = nil
		why.errorRate = fmt.Sprintf("errors counter %s is not on the page", mp.errors)
	case len(s.scrapes) < 2 || !reqOK || !errOK:
		why.errorRate = "waiting for a second scrape"
	case dReq > 0:
		s.errRate = ptr(round4(math.Min(dErr/dReq, 1)))
	case s.errRate == nil:
		why.errorRate = "no requests counted yet"
	}
	m.ErrorRate = s.errRate
	switch {
	case mp.latency == nil:
		why.latency = "the policy's metrics block maps no latency histogram"
	case sc.buckets == nil:
		s.p95, s.p50 = nil, nil
		why.latency = fmt.Sprintf("latency histogram %s is not on the page", mp.latency)
	case len(s.scrapes) < 2:
		why.latency = "waiting for a second scrape"
	default:
		if q, ok := bucketQuantile(0.95, dBuckets); ok {
			s.p95 = ptr(round3(q * sc.scale))
			if q50, ok := bucketQuantile(0.5, dBuckets); ok {
				s.p50 = ptr(round3(q50 * sc.scale))
			}
		} else if s.p95 == nil {
			why.latency = "no requests observed yet"
		}
	}
	m.P95LatencyMS = s.p95
	return why
}

func round4(v float64) float64 { return math.Round(v*10000) / 10000 }
