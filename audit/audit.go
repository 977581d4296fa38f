// Package audit is fleetplan's audit trail: every action, with time,
// rollout, phase, wave, device, actor, outcome and detail, stored durably in
// Consul KV and optionally mirrored to a JSON-lines file.
//
// Records are appended to chunks under fleetplan/audit/<rollout>/<seq> (a
// JSON array of at most ChunkSize records each, zero-padded sequence
// numbers), written with check-and-set, so the trail of a long rollout of a
// large fleet never hits Consul's value size limit and concurrent writers
// never lose a record.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// ChunkSize is the number of records per KV chunk (a record is ~300 bytes;
// Consul's value limit is 512 KiB).
const ChunkSize = 500

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
	kv     *api.KV
	prefix string

	mu   sync.Mutex
	file *os.File
	// tail caches the last chunk per rollout to append without a read.
	tail map[string]*chunk
}

type chunk struct {
	seq     int
	index   uint64
	records []Record
}

// New returns a trail under prefix (default "fleetplan/audit/").
func New(client *api.Client, prefix string) *Trail {
	if prefix == "" {
		prefix = "fleetplan/audit/"
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &Trail{kv: client.KV(), prefix: prefix, tail: map[string]*chunk{}}
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

// Append records rec durably. It retries lost check-and-set races.
func (t *Trail) Append(ctx context.Context, rec Record) error {
	if rec.Time.IsZero() {
		rec.Time = time.Now()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.file != nil {
		b, _ := json.Marshal(rec)
		if _, err := t.file.Write(append(b, '\n')); err != nil {
			return fmt.Errorf("writing the audit file: %w", err)
		}
	}
	k := key(rec.Rollout)
	for attempt := 0; attempt < 20; attempt++ {
		c := t.tail[k]
		if c == nil {
			var err error
			if c, err = t.loadTail(ctx, k); err != nil {
				return err
			}
		}
		next := c
		if len(c.records) >= ChunkSize {
			next = &chunk{seq: c.seq + 1}
		}
		recs := append(append([]Record(nil), next.records...), rec)
		b, err := json.Marshal(recs)
		if err != nil {
			return err
		}
		p := &api.KVPair{Key: t.chunkKey(k, next.seq), Value: b, ModifyIndex: next.index}
		ok, _, err := t.kv.CAS(p, (&api.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("appending to the audit trail of %s: %w", k, err)
		}
		if !ok {
			// Another writer appended: reload the tail and retry.
			delete(t.tail, k)
			continue
		}
		// Read back the index so the next append can CAS without a read.
		pair, _, err := t.kv.Get(p.Key, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil || pair == nil {
			delete(t.tail, k)
			return nil
		}
		t.tail[k] = &chunk{seq: next.seq, index: pair.ModifyIndex, records: recs}
		return nil
	}
	return errors.New("appending to the audit trail: too many concurrent writers")
}

func (t *Trail) chunkKey(k string, seq int) string {
	return fmt.Sprintf("%s%s/%08d", t.prefix, k, seq)
}

func (t *Trail) loadTail(ctx context.Context, k string) (*chunk, error) {
	keys, _, err := t.kv.Keys(t.prefix+k+"/", "", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the audit trail of %s: %w", k, err)
	}
	if len(keys) == 0 {
		return &chunk{seq: 0}, nil
	}
	sort.Strings(keys)
	last := keys[len(keys)-1]
	seq, _ := strconv.Atoi(last[strings.LastIndex(last, "/")+1:])
	pair, _, err := t.kv.Get(last, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the audit trail of %s: %w", k, err)
	}
	c := &chunk{seq: seq}
	if pair != nil {
		c.index = pair.ModifyIndex
		if err := json.Unmarshal(pair.Value, &c.records); err != nil {
			return nil, fmt.Errorf("audit chunk %s is corrupt: %w", last, err)
		}
	}
	return c, nil
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
	pairs, _, err := t.kv.List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading the audit trail: %w", err)
	}
	var out []Record
	for _, p := range pairs {
		var recs []Record
		if err := json.Unmarshal(p.Value, &recs); err != nil {
			return nil, fmt.Errorf("audit chunk %s is corrupt: %w", p.Key, err)
		}
		for _, r := range recs {
			if q.Device != "" && r.Device != q.Device {
				continue
			}
			if !q.Since.IsZero() && r.Time.Before(q.Since) {
				continue
			}
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}
