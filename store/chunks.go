package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Chunked logs. The audit trail, the registry event log and the device
// records of archived runs are kept as chunks: KV values that are JSON arrays
// of records, each bounded in records and bytes, so that a long log or a
// large fleet takes a few keys rather than one per record and no value comes
// near Consul's limit. Chunks are written with check-and-set, so concurrent
// writers never lose a record.

// ChunkLimits bound one chunk. A record larger than MaxBytes gets a chunk of
// its own; one larger than MaxValueBytes cannot be written.
type ChunkLimits struct {
	MaxRecords int // 0: no limit
	MaxBytes   int
}

// Chunk limits of the logs fleetplan keeps.
var (
	// ArchiveChunks: device records of an archived run.
	ArchiveChunks = ChunkLimits{MaxRecords: ArchiveChunkDevices, MaxBytes: ArchiveChunkBytes}
	// AuditChunks: audit records (a record is ~300 bytes).
	AuditChunks = ChunkLimits{MaxRecords: AuditChunkRecords, MaxBytes: MaxValueBytes}
	// EventChunks: registry events of one sync.
	EventChunks = ChunkLimits{MaxBytes: EventChunkBytes}
)

// Chunk sizes.
const (
	ArchiveChunkDevices = 500
	ArchiveChunkBytes   = 256 << 10
	AuditChunkRecords   = 500
	EventChunkBytes     = 256 << 10
)

// Appender writes chunked logs: new chunks at keys the caller names
// (WriteNew), or records added at the end of a folder of numbered chunks
// (Append), whose last chunk it caches so that an append costs one
// transaction. It is safe for concurrent use.
type Appender struct {
	client *api.Client
	limits ChunkLimits

	mu    sync.Mutex            // one write at a time; guards tails
	tails map[string]*tailChunk // folder -> its last chunk as last written

	// queue holds, per folder, the records of the callers waiting for
	// the write in progress to end: the next write takes them all (group
	// commit), so N concurrent appends cost a few transactions, not N.
	qmu   sync.Mutex
	queue map[string]*appendBatch
}

// appendBatch is the records of one or more Append calls, written
// together; done is closed once they are, err is the write's error.
type appendBatch struct {
	recs []json.RawMessage
	done chan struct{}
	err  error
}

type tailChunk struct {
	seq   int
	index uint64
	value []byte // the JSON array as stored
	n     int    // records in it
}

// NewAppender returns an appender of chunks within limits.
func NewAppender(client *api.Client, limits ChunkLimits) *Appender {
	return &Appender{client: client, limits: limits, tails: map[string]*tailChunk{}, queue: map[string]*appendBatch{}}
}

// Encode encodes records, one JSON value each, for WriteNew and Append.
func Encode[T any](recs []T) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(recs))
	for i, r := range recs {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encoding record %d: %w", i, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// WriteNew packs records into chunks and creates them (check-and-set 0) at
// key(0), key(1), ..., in as few transactions as MaxTxnOps and MaxTxnBytes
// allow.
func (a *Appender) WriteNew(ctx context.Context, recs []json.RawMessage, key func(i int) string) error {
	chunks, err := Pack(recs, a.limits)
	if err != nil {
		return err
	}
	ops := make(api.TxnOps, 0, len(chunks))
	for i, c := range chunks {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key(i), Value: c, Index: 0}})
	}
	_, _, err = runTxns(ctx, a.client, ops)
	return err
}

// Pack packs records into chunks within limits, in order.
func Pack(recs []json.RawMessage, limits ChunkLimits) ([][]byte, error) {
	p := packer{limits: limits}
	for _, r := range recs {
		if err := p.add(r); err != nil {
			return nil, err
		}
	}
	return p.done(), nil
}

// Append adds records at the end of a folder of chunks named <folder><seq>
// (AuditChunk): to its last chunk while that has room, then to new ones.
// A write lost to another writer is retried on a fresh read of the folder.
//
// Concurrent calls are committed in groups: the records of the calls that
// arrive while a write is in progress are written together by the next
// one, in the order they arrived, and every call returns once its own
// records are written (or with the error of the write that held them).
func (a *Appender) Append(ctx context.Context, folder string, recs ...json.RawMessage) error {
	if len(recs) == 0 {
		return nil
	}
	a.qmu.Lock()
	b := a.queue[folder]
	if b == nil {
		b = &appendBatch{done: make(chan struct{})}
		a.queue[folder] = b
	}
	b.recs = append(b.recs, recs...)
	a.qmu.Unlock()

	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-b.done:
		return b.err // another call of the group wrote it
	default:
	}
	a.qmu.Lock()
	if a.queue[folder] == b {
		delete(a.queue, folder) // later calls start the next group
	}
	all := b.recs
	a.qmu.Unlock()
	b.err = a.appendLocked(ctx, folder, all)
	close(b.done)
	return b.err
}

// appendLocked is Append's write of one group; a.mu is held.
func (a *Appender) appendLocked(ctx context.Context, folder string, recs []json.RawMessage) error {
	for attempt := 0; attempt < 20; attempt++ {
		tail := a.tails[folder]
		if tail == nil {
			var err error
			if tail, err = a.loadTail(ctx, folder); err != nil {
				return err
			}
		}
		next, err := a.appendTo(ctx, folder, tail, recs)
		if errors.Is(err, scheduler.ErrConflict) {
			// Another writer appended: read the tail again, after a
			// growing, jittered pause. A writer that holds the tail's
			// index writes at once while one that lost must read first,
			// so without the pause a busy writer starves the other for
			// as long as it writes.
			delete(a.tails, folder)
			if err := blocking.Sleep(ctx, conflictBackoff(attempt)); err != nil {
				return fmt.Errorf("appending to %s: %w", folder, err)
			}
			continue
		}
		if err != nil {
			delete(a.tails, folder)
			return fmt.Errorf("appending to %s: %w", folder, err)
		}
		if next == nil {
			delete(a.tails, folder)
		} else {
			a.tails[folder] = next
		}
		return nil
	}
	return fmt.Errorf("appending to %s: too many concurrent writers", folder)
}

// conflictBackoff is the pause before the retry after the attempt-th lost
// check-and-set (from 0): 2 ms doubling to 200 ms, half of it random (20
// attempts span about 3 s).
func conflictBackoff(attempt int) time.Duration {
	d := blocking.Backoff(attempt+1, 2*time.Millisecond, 200*time.Millisecond)
	return d/2 + blocking.Clock{}.Jitter(d/2)
}

// appendTo writes the records after tail and returns the new last chunk
// (nil when Consul did not report its index).
func (a *Appender) appendTo(ctx context.Context, folder string, tail *tailChunk, recs []json.RawMessage) (*tailChunk, error) {
	p := packer{limits: a.limits}
	p.resume(tail.value, tail.n)
	for _, r := range recs {
		if err := p.add(r); err != nil {
			return nil, err
		}
	}
	chunks, counts := p.done(), p.counts
	seq, index := tail.seq, tail.index
	if len(chunks) > 1 && bytes.Equal(chunks[0], tail.value) {
		// The last chunk was full: leave it as it is.
		chunks, counts = chunks[1:], counts[1:]
		seq, index = seq+1, 0
	}
	ops := make(api.TxnOps, 0, len(chunks))
	for i, c := range chunks {
		idx := uint64(0)
		if i == 0 {
			idx = index
		}
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: AuditChunk(folder, seq+i), Value: c, Index: idx}})
	}
	res, _, err := runTxns(ctx, a.client, ops)
	if err != nil {
		return nil, err
	}
	last := len(chunks) - 1
	next := &tailChunk{seq: seq + last, value: chunks[last], n: counts[last]}
	if len(res) != len(ops) || res[last].KV == nil {
		return nil, nil // written; the next append reads the tail again
	}
	next.index = res[last].KV.ModifyIndex
	return next, nil
}

// loadTail reads the last chunk of a folder.
func (a *Appender) loadTail(ctx context.Context, folder string) (*tailChunk, error) {
	q := (&api.QueryOptions{}).WithContext(ctx)
	keys, _, err := a.client.KV().Keys(folder, "", q)
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", folder, err)
	}
	if len(keys) == 0 {
		return &tailChunk{}, nil
	}
	slices.Sort(keys)
	last := keys[len(keys)-1]
	seq, err := strconv.Atoi(strings.TrimPrefix(last, folder))
	if err != nil {
		return nil, fmt.Errorf("chunk %s is not named by a sequence number", last)
	}
	pair, _, err := a.client.KV().Get(last, q)
	if err != nil {
		return nil, fmt.Errorf("reading %s from Consul: %w", last, err)
	}
	t := &tailChunk{seq: seq}
	if pair != nil {
		var recs []json.RawMessage
		if err := json.Unmarshal(pair.Value, &recs); err != nil {
			// A corrupt tail is left as it is (readers skip it with a
			// warning) and appends go on in a new chunk after it: one bad
			// chunk must not stop every later record (I9).
			return &tailChunk{seq: seq + 1}, nil
		}
		t.index, t.value, t.n = pair.ModifyIndex, pair.Value, len(recs)
	}
	return t, nil
}

// CorruptChunksError is returned with the records ReadChunks could read
// when some chunks could not be decoded; they were skipped.
type CorruptChunksError struct {
	Keys []string
}

func (e *CorruptChunksError) Error() string {
	return fmt.Sprintf("%d chunk(s) could not be decoded and were skipped: %s", len(e.Keys), strings.Join(e.Keys, ", "))
}

// packer builds chunks: JSON arrays of records within limits.
type packer struct {
	limits ChunkLimits
	chunks [][]byte
	counts []int
	buf    bytes.Buffer
	n      int
}

// resume continues a stored chunk of n records.
func (p *packer) resume(value []byte, n int) {
	if n == 0 {
		return
	}
	p.buf.Write(bytes.TrimSuffix(bytes.TrimSpace(value), []byte("]")))
	p.n = n
}

func (p *packer) add(rec json.RawMessage) error {
	if len(rec)+2 > MaxValueBytes {
		return fmt.Errorf("a record of %d bytes is over the %d bytes a Consul value can hold", len(rec), MaxValueBytes)
	}
	if p.n > 0 && ((p.limits.MaxRecords > 0 && p.n >= p.limits.MaxRecords) || p.buf.Len()+len(rec)+2 > p.limits.MaxBytes) {
		p.close()
	}
	if p.n == 0 {
		p.buf.WriteByte('[')
	} else {
		p.buf.WriteByte(',')
	}
	p.buf.Write(rec)
	p.n++
	return nil
}

func (p *packer) close() {
	p.buf.WriteByte(']')
	p.chunks = append(p.chunks, bytes.Clone(p.buf.Bytes()))
	p.counts = append(p.counts, p.n)
	p.buf.Reset()
	p.n = 0
}

func (p *packer) done() [][]byte {
	if p.n > 0 {
		p.close()
	}
	return p.chunks
}

// ReadChunks decodes the chunks under folder (one List), in key order, as
// arrays of T. Chunks that cannot be decoded are skipped: the records of
// the others are returned with a *CorruptChunksError naming them.
func ReadChunks[T any](ctx context.Context, client *api.Client, folder string) ([]T, error) {
	pairs, _, err := client.KV().List(folder, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", folder, err)
	}
	var out []T
	var corrupt []string
	for _, p := range pairs {
		var recs []T
		if err := json.Unmarshal(p.Value, &recs); err != nil {
			corrupt = append(corrupt, p.Key)
			continue
		}
		out = append(out, recs...)
	}
	if len(corrupt) > 0 {
		return out, &CorruptChunksError{Keys: corrupt}
	}
	return out, nil
}

// runTxns runs operations in as few transactions as MaxTxnOps and
// MaxTxnBytes allow, in order. It returns the results of the operations
// that committed (delete operations have none) and how many operations
// committed: on an error, those of the transactions before the one that
// failed.
func runTxns(ctx context.Context, client *api.Client, ops api.TxnOps) (api.TxnResults, int, error) {
	var out api.TxnResults
	start, size := 0, 0
	for i, op := range ops {
		n := 0
		if op.KV != nil {
			n = len(op.KV.Value)
		}
		if i > start && (i-start == MaxTxnOps || size+n > MaxTxnBytes) {
			res, err := runTxn(ctx, client, ops[start:i])
			if err != nil {
				return out, start, err
			}
			out = append(out, res...)
			start, size = i, 0
		}
		size += n
	}
	if start < len(ops) {
		res, err := runTxn(ctx, client, ops[start:])
		if err != nil {
			return out, start, err
		}
		out = append(out, res...)
	}
	return out, len(ops), nil
}
