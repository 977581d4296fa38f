// Package audit is fleetplan's audit trail: every action, with time,
// rollout, phase, wave, device, actor, outcome and detail, stored durably in
// Consul KV and optionally mirrored to a JSON-lines file.
//
// Records are appended to chunks under fleetplan/audit/<rollout>/<seq> (a
// JSON array of at most ChunkSize records each, zero-padded sequence
// numbers; see store.Layout) by the store's chunked appender, with
// check-and-set, so the trail of a long rollout of a large fleet never hits
// Consul's value size limit and concurrent writers never lose a record.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/store"
)

// ChunkSize is the number of records per KV chunk (a record is ~300 bytes;
// Consul's value limit is 512 KiB).
const ChunkSize = store.AuditChunkRecords

// Record is one audited action.
type Record struct {
	Time    time.Time `json:"time"`
	Rollout string    `json:"rollout,omitempty"`
	Run     string    `json:"run,omitempty"`
	Phase   string    `json:"phase,omitempty"`
	Wave    string    `json:"wave,omitempty"`
	Device  string    `json:"device,omitempty"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
}

// Trail writes and reads the audit trail.
type Trail struct {
	client *api.Client
	prefix string
	chunks *store.Appender

	mu   sync.Mutex
	file *os.File
	// Logger receives warnings (a corrupt chunk skipped); default: hclog's.
	Logger hclog.Logger
}

func (t *Trail) warn(msg string, args ...any) {
	l := t.Logger
	if l == nil {
		l = hclog.Default()
	}
	l.Named("audit").Warn(msg, args...)
}

// New returns a trail under prefix (default "fleetplan/audit/",
// store.Layout's Audit folder).
func New(client *api.Client, prefix string) *Trail {
	if prefix == "" {
		prefix = store.NewLayout("").Audit()
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Trail{client: client, prefix: prefix, chunks: store.NewAppender(client, store.AuditChunks)}
}

// MirrorTo also appends every record to a JSON-lines file.
func (t *Trail) MirrorTo(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("opening the audit file: %w", err)
	}
	t.mu.Lock()
	t.file = f
	t.mu.Unlock()
	return nil
}

// Close closes the mirror file.
func (t *Trail) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != nil {
		err := t.file.Close()
		t.file = nil
		return err
	}
	return nil
}

func key(rollout string) string {
	if rollout == "" {
		return "_global"
	}
	return rollout
}

// Append records recs durably, in order. It retries lost check-and-set
// races. Concurrent calls share transactions (see store.Appender.Append).
func (t *Trail) Append(ctx context.Context, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	byRollout := map[string][]json.RawMessage{}
	var order []string
	var lines []byte
	for _, rec := range recs {
		if rec.Time.IsZero() {
			rec.Time = time.Now()
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encoding an audit record: %w", err)
		}
		k := key(rec.Rollout)
		if _, seen := byRollout[k]; !seen {
			order = append(order, k)
		}
		byRollout[k] = append(byRollout[k], b)
		lines = append(append(lines, b...), '\n')
	}
	t.mu.Lock()
	if t.file != nil {
		if _, err := t.file.Write(lines); err != nil {
			t.mu.Unlock()
			return fmt.Errorf("writing the audit file: %w", err)
		}
	}
	t.mu.Unlock()
	for _, k := range order {
		if err := t.chunks.Append(ctx, t.prefix+k+"/", byRollout[k]...); err != nil {
			return fmt.Errorf("appending to the audit trail of %s: %w", k, err)
		}
	}
	return nil
}

// Query selects records.
type Query struct {
	Rollout string
	Device  string
	Since   time.Time
}

// List returns the records matching q, oldest first.
func (t *Trail) List(ctx context.Context, q Query) ([]Record, error) {
	prefix := t.prefix
	if q.Rollout != "" {
		prefix += key(q.Rollout) + "/"
	}
	recs, err := store.ReadChunks[Record](ctx, t.client, prefix)
	var corrupt *store.CorruptChunksError
	switch {
	case errors.As(err, &corrupt):
		// A corrupt chunk is skipped with a warning, never fatal (I9).
		t.warn("skipping corrupt audit chunks", "chunks", corrupt.Keys)
	case err != nil:
		return nil, fmt.Errorf("reading the audit trail: %w", err)
	}
	var out []Record
	for _, r := range recs {
		if q.Device != "" && r.Device != q.Device {
			continue
		}
		if !q.Since.IsZero() && r.Time.Before(q.Since) {
			continue
		}
		out = append(out, r)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
