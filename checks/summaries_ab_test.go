package checks

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

type fakeKV struct {
	pairs  consulapi.KVPairs
	err    error
	lists  []string
	onList func()
}

func (f *fakeKV) List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error) {
	f.lists = append(f.lists, prefix)
	if f.onList != nil {
		f.onList()
	}
	if f.err != nil {
		return nil, nil, f.err
	}
	var out consulapi.KVPairs
	for _, p := range f.pairs {
		if strings.HasPrefix(p.Key, prefix) {
			out = append(out, p)
		}
	}
	return out, &consulapi.QueryMeta{}, nil
}

func (f *fakeKV) put(t *testing.T, s contract.Summary) {
	t.Helper()
	b, err := contract.EncodeSummary(s)
	if err != nil {
		t.Fatal(err)
	}
	f.pairs = append(f.pairs, &consulapi.KVPair{Key: contract.SummaryKey("", s.App, s.Node), Value: b})
}

func f64(v float64) *float64 { return &v }

func TestSummaryReaderSamples(t *testing.T) {
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	kv := &fakeKV{}
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "jetson-1", Version: "2.0.0", At: at, Window: &contract.Window{
		Samples: 3, Requests: f64(300), Errors: f64(3), LatencyMS: []float64{50, 52, 61}, ProbeOK: 9, ProbeTotal: 10, CPUPercent: f64(40),
	}})
	// No counters: error rate not measured; latency only.
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "rpi-1", Version: "1.0.0", At: at, Window: &contract.Window{Samples: 2, LatencyMS: []float64{80, 81}}})
	// No window (written on a status change only): no evidence.
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "rpi-2", Version: "1.0.0", At: at})
	// Another application's folder and an unknown device are ignored.
	kv.put(t, contract.Summary{App: "other", Node: "jetson-1", Version: "9", At: at, Window: &contract.Window{LatencyMS: []float64{1}}})
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "gone-1", Version: "1.0.0", At: at, Window: &contract.Window{LatencyMS: []float64{1}}})
	kv.pairs = append(kv.pairs, &consulapi.KVPair{Key: contract.SummaryKey("", "edgeinfer", "rpi-3"), Value: []byte("{not json")})

	rd := &SummaryReader{KV: kv}
	devs := []scheduler.DeviceRef{{ID: "n1", Name: "jetson-1"}, {ID: "n2", Name: "rpi-1"}, {ID: "n3", Name: "rpi-2"}, {ID: "n4", Name: "rpi-3"}}
	got, err := rd.Samples(context.Background(), &scheduler.Rollout{App: "edgeinfer", ID: "r1"}, devs)
	if err != nil {
		t.Fatal(err)
	}
	if len(kv.lists) != 1 || kv.lists[0] != "fleetplan/agent/summaries/edgeinfer/" {
		t.Errorf("KV lists %v, want one list of the application's folder", kv.lists)
	}
	if len(got) != 2 {
		t.Fatalf("samples for %d devices (%v), want jetson-1 and rpi-1 only", len(got), got)
	}
	j := got["n1"]
	if !j.HasRequests || j.Requests != 300 || j.Errors != 3 || j.ProbeOK != 9 || j.ProbeTotal != 10 || len(j.LatencyMS) != 3 || j.Version != "2.0.0" || !j.At.Equal(at) || *j.CPUPercent != 40 {
		t.Errorf("jetson-1 sample %+v", j)
	}
	if r := got["n2"]; r.HasRequests || len(r.LatencyMS) != 2 {
		t.Errorf("rpi-1 sample %+v: want latency only", r)
	}
}

// Until the agents write summaries the folder is empty: no samples, no
// error, and the comparison says "not enough data".
func TestSummaryReaderNothingYet(t *testing.T) {
	rd := &SummaryReader{KV: &fakeKV{}}
	got, err := rd.Samples(context.Background(), &scheduler.Rollout{App: "edgeinfer"}, []scheduler.DeviceRef{{ID: "n1", Name: "a"}})
	if err != nil || len(got) != 0 {
		t.Fatalf("got %v, %v: want nothing", got, err)
	}
	recs := []*scheduler.DeviceRecord{{DeviceRef: scheduler.DeviceRef{ID: "n1", Class: "x"}}}
	cmp := scheduler.CompareGroups(&scheduler.AB{}, "1", "2", time.Time{}, recs, recs, got)
	if cmp.Verdict != scheduler.ABNotEnoughData {
		t.Errorf("verdict %q without evidence, want not enough data", cmp.Verdict)
	}
}

func TestSummaryReaderErrorsAndRequest(t *testing.T) {
	kv := &fakeKV{err: errors.New("Unexpected response code: 500")}
	requests := 0
	rd := &SummaryReader{KV: kv, Request: func(ctx context.Context, r *scheduler.Rollout) error {
		requests++
		return nil
	}}
	r := &scheduler.Rollout{App: "edgeinfer", ID: "r1"}
	_, err := rd.Samples(context.Background(), r, nil)
	if !errors.Is(err, scheduler.ErrControlPlane) || !strings.Contains(err.Error(), "edgeinfer") {
		t.Errorf("err %v, want a control-plane error naming the application", err)
	}
	kv.err = nil
	if _, err := rd.Samples(context.Background(), r, nil); err != nil {
		t.Fatal(err)
	}
	if requests != 1 {
		t.Errorf("%d summary requests for one run, want 1", requests)
	}
	// With a request, only the summaries that answer it count.
	at := time.Now()
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "a", Version: "1", At: at, Request: "r0-ab", Window: &contract.Window{LatencyMS: []float64{1}}})
	kv.put(t, contract.Summary{App: "edgeinfer", Node: "b", Version: "1", At: at, Request: "r1-ab", Window: &contract.Window{LatencyMS: []float64{1}}})
	got, err := rd.Samples(context.Background(), r, []scheduler.DeviceRef{{ID: "n1", Name: "a"}, {ID: "n2", Name: "b"}})
	if err != nil || len(got) != 1 || got["n2"].Version != "1" {
		t.Errorf("samples %v, %v: want only b's, which answers r1-ab", got, err)
	}
	if _, err := rd.Samples(context.Background(), &scheduler.Rollout{App: "edgeinfer", ID: "r2"}, nil); err != nil || requests != 2 {
		t.Errorf("a new run requests again: %d requests, %v", requests, err)
	}
}

type fakeConfigKV struct {
	pair   *consulapi.KVPair
	losses int
	cas    int
}

func (f *fakeConfigKV) Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error) {
	if f.pair == nil || f.pair.Key != key {
		return nil, nil, nil
	}
	p := *f.pair
	return &p, nil, nil
}

func (f *fakeConfigKV) CAS(p *consulapi.KVPair, q *consulapi.WriteOptions) (bool, *consulapi.WriteMeta, error) {
	f.cas++
	if f.losses > 0 {
		f.losses--
		f.pair.ModifyIndex++
		return false, nil, nil
	}
	if p.ModifyIndex != f.pair.ModifyIndex {
		return false, nil, nil
	}
	f.pair = &consulapi.KVPair{Key: p.Key, Value: p.Value, ModifyIndex: p.ModifyIndex + 1}
	return true, nil, nil
}

func TestRequestSummaries(t *testing.T) {
	kv := &fakeConfigKV{pair: &consulapi.KVPair{Key: "fleetplan/agent/apps/edgeinfer", Value: []byte(`{"app":"edgeinfer","health_path":"/health"}`), ModifyIndex: 7}, losses: 1}
	req := RequestSummaries(kv, "")
	if err := req(context.Background(), &scheduler.Rollout{App: "edgeinfer", ID: "r42"}); err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(kv.pair.Value, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["summary_request"] != "r42-ab" || cfg["health_path"] != "/health" || cfg["app"] != "edgeinfer" {
		t.Errorf("config after the request: %v", cfg)
	}
	if kv.cas != 2 {
		t.Errorf("%d CAS writes, want 2 (one lost, retried)", kv.cas)
	}
	if err := req(context.Background(), &scheduler.Rollout{App: "other", ID: "r1"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("no configuration: err %v", err)
	}
}
