package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// fakeKV is a Consul whose /v1/txn applies check-session and cas
// operations atomically on an in-memory KV (rolled back whole when one
// fails, as Consul does) and whose /v1/kv/ answers reads, keeping the
// transactions it was sent.
type fakeKV struct {
	mu     sync.Mutex
	owners map[string]string
	kv     map[string]fakeEntry
	index  uint64
	txns   [][]txnOp
}

type fakeEntry struct {
	value []byte
	index uint64
}

func newFakeKV() *fakeKV {
	return &fakeKV{owners: map[string]string{}, kv: map[string]fakeEntry{}, index: 100}
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if key, ok := strings.CutPrefix(r.URL.Path, "/v1/kv/"); ok && r.Method == http.MethodGet {
		e, found := f.kv[key]
		if !found {
			w.Header().Set("X-Consul-Index", fmt.Sprint(f.index))
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode([]map[string]any{{"Key": key, "Value": e.value, "ModifyIndex": e.index}})
		return
	}
	if r.URL.Path != "/v1/txn" {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var ops []struct {
		KV struct {
			Verb, Key, Session string
			Value              []byte
			Index              uint64
		}
	}
	if err := json.Unmarshal(body, &ops); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var sent []txnOp
	_ = json.Unmarshal(body, &sent)
	f.txns = append(f.txns, sent)
	next := map[string]fakeEntry{}
	idx := f.index + 1
	var results []map[string]any
	for i, op := range ops {
		fail := ""
		switch op.KV.Verb {
		case "check-session":
			if f.owners[op.KV.Key] != op.KV.Session {
				fail = "failed session check for key \"" + op.KV.Key + "\""
			}
		case "cas":
			cur, ok := next[op.KV.Key]
			if !ok {
				cur = f.kv[op.KV.Key]
			}
			if cur.index != op.KV.Index {
				fail = "failed to set key \"" + op.KV.Key + "\", index is stale"
				break
			}
			next[op.KV.Key] = fakeEntry{value: op.KV.Value, index: idx}
			results = append(results, map[string]any{"KV": map[string]any{"Key": op.KV.Key, "ModifyIndex": idx}})
		default:
			fail = "unexpected verb " + op.KV.Verb
		}
		if fail != "" {
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(map[string]any{"Errors": []any{map[string]any{"OpIndex": i, "What": fail}}})
			return
		}
	}
	for k, e := range next {
		f.kv[k] = e
	}
	f.index = idx
	_ = json.NewEncoder(w).Encode(map[string]any{"Results": results})
}

func records(n int) []*scheduler.DeviceRecord {
	out := make([]*scheduler.DeviceRecord, n)
	for i := range out {
		out[i] = &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: fmt.Sprintf("node-%03d", i), Name: fmt.Sprintf("dev-%d", i)}, State: scheduler.DevicePending}
	}
	return out
}

// SaveDevices writes the records in transactions of at most MaxTxnOps
// operations, each checking the lock's session when the store holds it,
// sets every record's index, and writes them again at those indexes.
func TestSaveDevicesBatches(t *testing.T) {
	f := newFakeKV()
	s := fakeStore(t, f)
	lock := s.lockKey("app")
	f.owners[lock] = "sid-1"
	s.sessions.Store("app", "sid-1")
	recs := records(300)
	n, err := s.SaveDevices(context.Background(), "app", recs)
	if err != nil || n != 300 {
		t.Fatalf("SaveDevices: %d written, %v", n, err)
	}
	if len(f.txns) != 5 { // 63 records and the lock check each
		t.Fatalf("%d transactions, want 5", len(f.txns))
	}
	written := 0
	for i, txn := range f.txns {
		if len(txn) > MaxTxnOps || txn[0].KV.Verb != "check-session" || txn[0].KV.Key != lock || txn[0].KV.Session != "sid-1" {
			t.Fatalf("transaction %d: %d operations, first %+v; want at most %d, the lock check first", i, len(txn), txn[0].KV, MaxTxnOps)
		}
		for _, op := range txn[1:] {
			if want := s.devicesPrefix("app") + recs[written].ID; op.KV.Verb != "cas" || op.KV.Key != want {
				t.Fatalf("transaction %d writes %s %s, want cas %s (in order)", i, op.KV.Verb, op.KV.Key, want)
			}
			written++
		}
	}
	for _, d := range recs {
		e := f.kv[s.devicesPrefix("app")+d.ID]
		var got scheduler.DeviceRecord
		if err := json.Unmarshal(e.value, &got); err != nil || got.Name != d.Name || d.Index == 0 || d.Index != e.index {
			t.Fatalf("record %s: index %d, stored at %d as %+v (%v)", d.ID, d.Index, e.index, got.DeviceRef, err)
		}
		d.State = scheduler.DeviceSwitching
	}
	if n, err := s.SaveDevices(context.Background(), "app", recs); err != nil || n != 300 {
		t.Fatalf("writing again at the new indexes: %d written, %v", n, err)
	}
}

// Without the lock, the transactions carry records only; large records
// split them by size.
func TestSaveDevicesWithoutLockAndBySize(t *testing.T) {
	f := newFakeKV()
	s := fakeStore(t, f)
	recs := records(130)
	for _, d := range recs[:10] {
		d.Reason = strings.Repeat("x", 100<<10) // 100 KiB: 3 fit a transaction
	}
	n, err := s.SaveDevices(context.Background(), "app", recs)
	if err != nil || n != 130 {
		t.Fatalf("SaveDevices: %d written, %v", n, err)
	}
	for i, txn := range f.txns {
		size := 0
		for _, op := range txn {
			if op.KV.Verb != "cas" {
				t.Fatalf("transaction %d has a %s without a held lock", i, op.KV.Verb)
			}
			size += len(op.KV.Value)
		}
		if len(txn) > MaxTxnOps || (len(txn) > 1 && size > MaxTxnBytes) {
			t.Fatalf("transaction %d: %d operations, %d bytes", i, len(txn), size)
		}
	}
	// 10 large records, 3 a transaction, the last with 63 small ones;
	// then the 57 small ones left.
	if len(f.txns) != 5 || len(f.txns[3]) != 64 || len(f.txns[4]) != 57 {
		t.Fatalf("%d transactions, want 5 (3, 3, 3, 1+63, 57 records)", len(f.txns))
	}
}

// A lost check-and-set stops at its transaction: the ones before are
// written (and counted), nothing of it is.
func TestSaveDevicesConflict(t *testing.T) {
	f := newFakeKV()
	s := fakeStore(t, f)
	s.sessions.Store("app", "sid-1")
	f.owners[s.lockKey("app")] = "sid-1"
	recs := records(200)
	f.kv[s.devicesPrefix("app")+recs[100].ID] = fakeEntry{value: []byte(`{}`), index: 7} // another writer's
	n, err := s.SaveDevices(context.Background(), "app", recs)
	if !errors.Is(err, scheduler.ErrConflict) || n != 63 {
		t.Fatalf("SaveDevices: %d written, %v; want 63 and a conflict", n, err)
	}
	if !strings.Contains(err.Error(), recs[63].ID) || !strings.Contains(err.Error(), recs[100].ID) {
		t.Errorf("the error names neither the batch nor the key: %v", err)
	}
	for i, d := range recs {
		_, stored := f.kv[s.devicesPrefix("app")+d.ID]
		if (i < 63) != (d.Index != 0) || (i < 63 || i == 100) != stored {
			t.Fatalf("record %d: index %d, stored %v", i, d.Index, stored)
		}
	}
}

// A lost lock writes nothing.
func TestSaveDevicesLockLost(t *testing.T) {
	f := newFakeKV()
	s := fakeStore(t, f)
	s.sessions.Store("app", "sid-1")
	f.owners[s.lockKey("app")] = "sid-2"
	recs := records(10)
	n, err := s.SaveDevices(context.Background(), "app", recs)
	if !errors.Is(err, scheduler.ErrLockLost) || n != 0 || len(f.kv) != 0 {
		t.Fatalf("SaveDevices: %d written, %v, %d keys; want ErrLockLost and nothing", n, err, len(f.kv))
	}
}

// Bad input is refused before anything is written.
func TestSaveDevicesRefusesBadInput(t *testing.T) {
	f := newFakeKV()
	s := fakeStore(t, f)
	recs := records(3)
	recs[2].ID = "a/b"
	if n, err := s.SaveDevices(context.Background(), "app", recs); err == nil || n != 0 || len(f.txns) != 0 {
		t.Fatalf("a device ID with a slash: %d written, %v, %d transactions", n, err, len(f.txns))
	}
	dup := records(2)
	dup = append(dup, &scheduler.DeviceRecord{DeviceRef: dup[0].DeviceRef})
	n, err := s.SaveDevices(context.Background(), "app", dup)
	if !errors.Is(err, scheduler.ErrConflict) || n != 2 {
		t.Fatalf("the same device twice, the second copy stale: %d written, %v", n, err)
	}
}
