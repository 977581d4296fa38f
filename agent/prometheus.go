package agent

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fleetplan/fleetplan/contract"
)

// Metrics formats of MetricsConfig.Format.
const (
	MetricsFormatJSON       = "json"
	MetricsFormatPrometheus = "prometheus"
)

// MetricsConfig says where and how the agent reads an application's
// metrics: the policy's health.application.metrics block.
type MetricsConfig struct {
	// Path on the instance (DefaultMetricsPath).
	Path string `json:"path,omitempty"`
	// Format is MetricsFormatJSON (the default: fleetplan's JSON record)
	// or MetricsFormatPrometheus (text exposition format).
	Format string `json:"format,omitempty"`
	// Prometheus only: selectors of the request and error counters and
	// the latency histogram, `name` or `name{label="v",code=~"5.."}`
	// (ParseSelector). The series a selector matches are summed.
	Requests string `json:"requests,omitempty"`
	Errors   string `json:"errors,omitempty"`
	Latency  string `json:"latency,omitempty"`
}

// promMapping is a MetricsConfig's parsed selectors; a nil one is not
// configured.
type promMapping struct {
	requests, errors, latency *contract.Selector
}

func newPromMapping(c MetricsConfig) (promMapping, error) {
	var m promMapping
	for _, f := range []struct {
		name string
		src  string
		dst  **contract.Selector
	}{{"requests", c.Requests, &m.requests}, {"errors", c.Errors, &m.errors}, {"latency", c.Latency, &m.latency}} {
		if strings.TrimSpace(f.src) == "" {
			continue
		}
		s, err := contract.ParseSelector(f.src)
		if err != nil {
			return promMapping{}, fmt.Errorf("metrics %s: %w", f.name, err)
		}
		*f.dst = &s
	}
	return m, nil
}

// matches reports whether a series' labels satisfy the selector.
func matches(s contract.Selector, labels []*dto.LabelPair) bool {
	return s.Match(func(name string) string {
		for _, l := range labels {
			if l.GetName() == name {
				return l.GetValue()
			}
		}
		return ""
	})
}

// bucket is one cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// promScrape is what one Prometheus page gave for the mapping: sums over
// the matching series. A nil field was not found on the page.
type promScrape struct {
	requests *float64
	errors   *float64
	// buckets of the latency histogram, by upper bound (seconds as
	// exposed), cumulative; count its total.
	buckets []bucket
	count   *float64
	// scale turns a bucket bound into milliseconds.
	scale float64
	// rss is process_resident_memory_bytes (the client libraries'
	// standard process metric), when the page has it.
	rss *float64
}

// parsePrometheus reads a text exposition page and sums what the mapping
// selects.
func parsePrometheus(body []byte, m promMapping) (promScrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return promScrape{}, fmt.Errorf("not the Prometheus text format: %w", err)
	}
	var out promScrape
	out.rss = sumCounter(fams, contract.Selector{Name: "process_resident_memory_bytes"})
	if m.requests != nil {
		out.requests = sumCounter(fams, *m.requests)
	}
	if m.errors != nil {
		out.errors = sumCounter(fams, *m.errors)
	}
	if m.latency != nil {
		out.buckets, out.count = sumHistogram(fams, *m.latency)
		out.scale = 1000
		if n := m.latency.Name; strings.HasSuffix(n, "_milliseconds") || strings.HasSuffix(n, "_ms") {
			out.scale = 1
		}
	}
	return out, nil
}

// family finds a selector's family: by its name, else (a counter written
// without its _total suffix, or with it) by the other spelling.
func family(fams map[string]*dto.MetricFamily, name string) *dto.MetricFamily {
	if f := fams[name]; f != nil {
		return f
	}
	if base, ok := strings.CutSuffix(name, "_total"); ok {
		return fams[base]
	}
	return fams[name+"_total"]
}

// sumCounter sums the matching series of a counter (or gauge, or
// untyped) family; nil when no series matches.
func sumCounter(fams map[string]*dto.MetricFamily, s contract.Selector) *float64 {
	f := family(fams, s.Name)
	if f == nil {
		return nil
	}
	var sum float64
	found := false
	for _, mt := range f.GetMetric() {
		if !matches(s, mt.GetLabel()) {
			continue
		}
		var v float64
		switch {
		case mt.Counter != nil:
			v = mt.GetCounter().GetValue()
		case mt.Untyped != nil:
			v = mt.GetUntyped().GetValue()
		case mt.Gauge != nil:
			v = mt.GetGauge().GetValue()
		case mt.Histogram != nil:
			v = float64(mt.GetHistogram().GetSampleCount())
		default:
			continue
		}
		if math.IsNaN(v) {
			continue
		}
		sum += v
		found = true
	}
	if !found {
		return nil
	}
	return &sum
}

// sumHistogram adds up the buckets of the matching series of a histogram
// family; nil when none matches.
func sumHistogram(fams map[string]*dto.MetricFamily, s contract.Selector) ([]bucket, *float64) {
	f := fams[s.Name]
	if f == nil || f.GetType() != dto.MetricType_HISTOGRAM {
		return nil, nil
	}
	byLE := map[float64]float64{}
	var total float64
	found := false
	for _, mt := range f.GetMetric() {
		h := mt.GetHistogram()
		if h == nil || !matches(s, mt.GetLabel()) {
			continue
		}
		found = true
		total += float64(h.GetSampleCount())
		hasInf := false
		for _, b := range h.GetBucket() {
			byLE[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			hasInf = hasInf || math.IsInf(b.GetUpperBound(), 1)
		}
		if !hasInf {
			// The +Inf bucket is the sample count.
			byLE[math.Inf(1)] += float64(h.GetSampleCount())
		}
	}
	if !found {
		return nil, nil
	}
	out := make([]bucket, 0, len(byLE))
	for le, c := range byLE {
		out = append(out, bucket{le: le, count: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out, &total
}

// counterDelta is cur-prev for a counter, cur when it went backwards (the
// application restarted and its counter with it).
func counterDelta(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

// bucketDelta is the histogram of the observations between two scrapes
// (cur alone after a reset: its total went backwards, or the bounds
// changed).
func bucketDelta(prev, cur []bucket) []bucket {
	if len(prev) != len(cur) {
		return slices.Clone(cur)
	}
	out := make([]bucket, len(cur))
	for i := range cur {
		if cur[i].le != prev[i].le || cur[len(cur)-1].count < prev[len(prev)-1].count {
			return slices.Clone(cur)
		}
		out[i] = bucket{le: cur[i].le, count: cur[i].count - prev[i].count}
	}
	return out
}

// addBuckets adds b to acc (same bounds), or returns b when they differ.
func addBuckets(acc, b []bucket) []bucket {
	if len(acc) != len(b) {
		return slices.Clone(b)
	}
	for i := range b {
		if acc[i].le != b[i].le {
			return slices.Clone(b)
		}
	}
	out := slices.Clone(acc)
	for i := range b {
		out[i].count += b[i].count
	}
	return out
}

// bucketQuantile is the q-quantile of cumulative buckets by linear
// interpolation within the bucket the rank falls in, as Prometheus'
// histogram_quantile computes it: the lowest bucket starts at 0 (when its
// bound is positive), a rank in the +Inf bucket gives the highest finite
// bound. ok is false without observations.
func bucketQuantile(q float64, bs []bucket) (float64, bool) {
	if len(bs) == 0 || math.IsNaN(q) {
		return 0, false
	}
	total := bs[len(bs)-1].count
	if !math.IsInf(bs[len(bs)-1].le, 1) || total <= 0 {
		return 0, false
	}
	if len(bs) < 2 {
		return 0, false
	}
	rank := q * total
	i := sort.Search(len(bs)-1, func(i int) bool { return bs[i].count >= rank })
	if i == len(bs)-1 {
		return bs[len(bs)-2].le, true
	}
	if i == 0 && bs[0].le <= 0 {
		return bs[0].le, true
	}
	start, end := 0.0, bs[i].le
	prevCount := 0.0
	if i > 0 {
		start, prevCount = bs[i-1].le, bs[i-1].count
	}
	inBucket := bs[i].count - prevCount
	if inBucket <= 0 {
		return end, true
	}
	return start + (end-start)*(rank-prevCount)/inBucket, true
}
