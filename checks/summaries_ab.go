package checks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// SummaryKV is the part of Consul's KV API the summary reader uses; the
// *consulapi.KV of a client implements it.
type SummaryKV interface {
	List(prefix string, q *consulapi.QueryOptions) (consulapi.KVPairs, *consulapi.QueryMeta, error)
}

// SummaryReader yields an a-b comparison's measurements
// (scheduler.ComparisonSource) from the device summaries the device agents
// write to Consul KV (contract.SummaryKey): one KV list of the
// application's folder per call, never a read per device. A device
// without a summary, or whose summary has no window, is left out: no
// evidence, never a pass (the comparison then says "not enough data").
type SummaryReader struct {
	KV SummaryKV
	// Folder is the summaries' KV folder ("": contract.DefaultSummaryPrefix).
	Folder string
	// Request, when set, asks the agents for fresh summaries (the
	// application's summary_request, named SummaryRequestID); it is called
	// once per rollout run, before the first read, so that the windows end
	// at the comparison. Only the summaries that answer it are used then.
	Request func(ctx context.Context, r *scheduler.Rollout) error
	Logger  hclog.Logger

	mu        sync.Mutex
	requested map[string]bool // run IDs
}

// NewSummaryReader reads the summaries through a Consul client.
func NewSummaryReader(client *consulapi.Client, logger hclog.Logger) *SummaryReader {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &SummaryReader{KV: client.KV(), Logger: logger.Named("summaries")}
}

var _ scheduler.ComparisonSource = (*SummaryReader)(nil)

// Samples returns, by device ID, the measurements of the devices whose
// summary for r.App is in KV. A summary is matched to a device by its key
// (the node's name, or its ID) and its Node field.
func (s *SummaryReader) Samples(ctx context.Context, r *scheduler.Rollout, devices []scheduler.DeviceRef) (map[string]scheduler.GroupSample, error) {
	log := s.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if s.Request != nil && s.needsRequest(r.ID) {
		if err := s.Request(ctx, r); err != nil {
			return nil, fmt.Errorf("requesting the device summaries of %s (run %s): %w", r.App, r.ID, err)
		}
		s.mu.Lock()
		s.requested[r.ID] = true
		s.mu.Unlock()
	}
	folder := contract.SummaryFolder(s.Folder, r.App)
	pairs, _, err := s.KV.List(folder, (&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing the device summaries of %s under %s: %w (%w)", r.App, folder, err, scheduler.ErrControlPlane)
	}
	byKey := map[string]string{}
	for _, d := range devices {
		if d.Name != "" {
			byKey[d.Name] = d.ID
		}
		byKey[d.ID] = d.ID
	}
	out := map[string]scheduler.GroupSample{}
	for _, p := range pairs {
		node := strings.TrimPrefix(p.Key, folder)
		id, ok := byKey[node]
		if !ok {
			continue
		}
		sum, err := contract.DecodeSummary(p.Value)
		if err != nil {
			// A record the agent could not have written: no evidence.
			log.Warn("ignoring an unreadable device summary", "key", p.Key, "error", err)
			continue
		}
		if sum.App != "" && sum.App != r.App {
			continue
		}
		if s.Request != nil && sum.Request != SummaryRequestID(r) {
			// Written before the request was answered (a status change):
			// not the comparison's window yet.
			continue
		}
		if g, ok := sampleOf(id, sum); ok {
			out[id] = g
		}
	}
	return out, nil
}

func (s *SummaryReader) needsRequest(run string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requested == nil {
		s.requested = map[string]bool{}
	}
	return !s.requested[run]
}

// sampleOf converts a summary's window; false when it has none.
func sampleOf(id string, sum contract.Summary) (scheduler.GroupSample, bool) {
	w := sum.Window
	if w == nil {
		return scheduler.GroupSample{}, false
	}
	g := scheduler.GroupSample{
		Device:        id,
		Version:       sum.Version,
		At:            sum.At,
		LatencyMS:     append([]float64(nil), w.LatencyMS...),
		ProbeOK:       w.ProbeOK,
		ProbeTotal:    w.ProbeTotal,
		CPUPercent:    w.CPUPercent,
		MemoryPercent: w.MemoryPercent,
	}
	if w.Requests != nil {
		g.HasRequests = true
		g.Requests = *w.Requests
		if w.Errors != nil {
			g.Errors = *w.Errors
		}
	}
	return g, true
}

// AgentConfigKV is the part of Consul's KV API RequestSummaries uses.
type AgentConfigKV interface {
	Get(key string, q *consulapi.QueryOptions) (*consulapi.KVPair, *consulapi.QueryMeta, error)
	CAS(p *consulapi.KVPair, q *consulapi.WriteOptions) (bool, *consulapi.WriteMeta, error)
}

// SummaryRequestField is the field of an application's agent configuration
// that names the summary request the device agents answer.
const SummaryRequestField = "summary_request"

// SummaryRequestID names the summary request of a run's comparison.
func SummaryRequestID(r *scheduler.Rollout) string { return r.ID + "-ab" }

// RequestSummaries returns a SummaryReader.Request that asks the device
// agents for fresh summaries: it names a new request (the run's ID with
// "-ab") in the application's agent configuration (folder "" is the
// default), keeping every other field, with a check-and-set write.
func RequestSummaries(kv AgentConfigKV, folder string) func(ctx context.Context, r *scheduler.Rollout) error {
	return func(ctx context.Context, r *scheduler.Rollout) error {
		key := store.AgentConfigKey(folder, r.App)
		for attempt := 0; attempt < 5; attempt++ {
			pair, _, err := kv.Get(key, (&consulapi.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("reading the agent configuration %s: %w (%w)", key, err, scheduler.ErrControlPlane)
			}
			if pair == nil {
				return fmt.Errorf("the agent configuration %s of %s is missing: the device agents cannot be asked for summaries (it is published when a rollout starts)", key, r.App)
			}
			cfg := map[string]json.RawMessage{}
			if err := json.Unmarshal(pair.Value, &cfg); err != nil {
				return fmt.Errorf("reading the agent configuration %s: %w", key, err)
			}
			req, _ := json.Marshal(SummaryRequestID(r))
			cfg[SummaryRequestField] = req
			b, err := json.Marshal(cfg)
			if err != nil {
				return fmt.Errorf("encoding the agent configuration %s: %w", key, err)
			}
			ok, _, err := kv.CAS(&consulapi.KVPair{Key: key, Value: b, ModifyIndex: pair.ModifyIndex}, (&consulapi.WriteOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("writing the summary request to %s: %w (%w)", key, err, scheduler.ErrControlPlane)
			}
			if ok {
				return nil
			}
		}
		return fmt.Errorf("writing the summary request to %s: %w", key, errors.New("the configuration kept changing underneath (check-and-set lost 5 times)"))
	}
}
