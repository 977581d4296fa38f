//go:build integration

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/internal/testcluster"
	"github.com/fleetplan/fleetplan/scheduler"
)

// newTestStore returns a store under a KV prefix of its own, removed when
// the test ends.
func newTestStore(t *testing.T) (*Consul, *api.Client) {
	t.Helper()
	cl := testcluster.Require(t)
	prefix := fmt.Sprintf("fleetplan-test/store-%s-%d/", strings.ReplaceAll(t.Name(), "/", "_"), time.Now().UnixNano())
	t.Cleanup(func() {
		if _, err := cl.Consul.KV().DeleteTree(prefix, nil); err != nil {
			t.Errorf("cleaning up %s: %v", prefix, err)
		}
	})
	return New(cl.Consul, Options{Prefix: prefix, SessionTTL: 10 * time.Second, LockDelay: time.Second}), cl.Consul
}

func testRun(app string) *scheduler.Rollout {
	return &scheduler.Rollout{
		App: app, ID: "run-1", Version: "2.0.0", Strategy: scheduler.StrategyCanaryRolling,
		Active: scheduler.SlotBlue, Candidate: scheduler.SlotGreen, Phase: scheduler.PhaseCanary,
		StartedAt: time.Now().UTC().Truncate(time.Second),
	}
}

func TestIntegrationCheckAndSet(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()

	r := testRun("app")
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	if r.Index == 0 {
		t.Fatal("SaveRollout did not set the index")
	}
	stale := *r
	r.Phase = scheduler.PhaseAwaitingApproval
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatalf("write at the current index: %v", err)
	}
	stale.Phase = scheduler.PhaseRollingBack
	if err := s.SaveRollout(ctx, &stale); !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("stale write: got %v, want ErrConflict", err)
	}
	fresh := testRun("app")
	if err := s.SaveRollout(ctx, fresh); !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("create over an existing run: got %v, want ErrConflict", err)
	}

	d := &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: "n1", Name: "jetson-1", Class: "jetson"}, State: scheduler.DevicePending}
	if err := s.SaveDevice(ctx, "app", d); err != nil {
		t.Fatal(err)
	}
	staleDev := *d
	d.State = scheduler.DeviceSwitching
	if err := s.SaveDevice(ctx, "app", d); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveDevice(ctx, "app", &staleDev); !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("stale device write: got %v, want ErrConflict", err)
	}

	got, err := s.Load(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != scheduler.PhaseAwaitingApproval || got.Index != r.Index {
		t.Fatalf("loaded phase %s index %d, want %s %d", got.Phase, got.Index, scheduler.PhaseAwaitingApproval, r.Index)
	}
	if dd := got.Devices["n1"]; dd == nil || dd.State != scheduler.DeviceSwitching || dd.Index != d.Index {
		t.Fatalf("loaded device %+v, want state switching at index %d", dd, d.Index)
	}

	// Active slot.
	if a, err := s.ActiveSlot(ctx, "app"); err != nil || a != nil {
		t.Fatalf("ActiveSlot before any: %v %v", a, err)
	}
	a := &scheduler.ActiveSlot{Slot: scheduler.SlotBlue, Version: "1.0.0", RolloutID: "run-0", Since: time.Now().UTC()}
	if err := s.SetActiveSlot(ctx, "app", a); err != nil {
		t.Fatal(err)
	}
	if err := s.SetActiveSlot(ctx, "app", &scheduler.ActiveSlot{Slot: scheduler.SlotGreen}); !errors.Is(err, scheduler.ErrConflict) {
		t.Fatalf("create over an existing active slot: got %v, want ErrConflict", err)
	}
	all, err := s.ActiveSlots(ctx)
	if err != nil || all["app"] == nil || all["app"].Version != "1.0.0" {
		t.Fatalf("ActiveSlots: %v %v", all, err)
	}
}

func TestIntegrationLoadManyDevicesAndArchive(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()
	const n = 1200
	r := testRun("many")
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	// Write the records with a few writers: the test is about reading them.
	var wg sync.WaitGroup
	errs := make(chan error, n)
	ids := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range ids {
				d := &scheduler.DeviceRecord{
					DeviceRef: scheduler.DeviceRef{ID: fmt.Sprintf("node-%05d", i), Name: fmt.Sprintf("dev-%d", i), Class: "rpi"},
					Stage:     i % 4, State: scheduler.DevicePending, Reason: strings.Repeat("x", 200),
					Baseline: &scheduler.Metrics{ErrorRate: 0.01, P95LatencyMS: 12}, UpdatedAt: time.Now().UTC(),
				}
				if err := s.SaveDevice(ctx, "many", d); err != nil {
					errs <- err
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		ids <- i
	}
	close(ids)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	start := time.Now()
	got, err := s.Load(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Load of %d devices took %s", n, time.Since(start))
	if len(got.Devices) != n {
		t.Fatalf("loaded %d devices, want %d", len(got.Devices), n)
	}
	for id, d := range got.Devices {
		if d.Index == 0 || d.ID != id {
			t.Fatalf("device %s loaded without its index or ID: %+v", id, d)
		}
	}

	// Archive: chunks, the current run removed, History and LoadRun.
	got.Outcome = scheduler.OutcomeSucceeded
	got.Phase = scheduler.PhaseDone
	if err := s.SaveRollout(ctx, got); err != nil {
		t.Fatal(err)
	}
	if err := s.Archive(ctx, got); err != nil {
		t.Fatal(err)
	}
	if cur, err := s.Load(ctx, "many"); err != nil || cur != nil {
		t.Fatalf("after Archive, Load = %v, %v; want nil", cur, err)
	}
	keys, _, err := cc.KV().Keys(s.Layout().RunDevices("many", "run-1"), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := (n + ArchiveChunkDevices - 1) / ArchiveChunkDevices; len(keys) != want {
		t.Fatalf("archive has %d device chunks, want %d", len(keys), want)
	}
	hist, err := s.History(ctx, "many")
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 1 || hist[0].ID != "run-1" || hist[0].Outcome != scheduler.OutcomeSucceeded {
		t.Fatalf("History = %+v", hist)
	}
	run, err := s.LoadRun(ctx, "many", "run-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(run.Devices) != n || run.Devices["node-00042"].Baseline == nil {
		t.Fatalf("LoadRun: %d devices, want %d with their metrics", len(run.Devices), n)
	}
	if _, err := s.LoadRun(ctx, "many", "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LoadRun of an unknown run: %v, want ErrNotFound", err)
	}
	// A new run can start.
	if err := s.SaveRollout(ctx, &scheduler.Rollout{App: "many", ID: "run-2"}); err != nil {
		t.Fatalf("a new run after Archive: %v", err)
	}
}

func TestIntegrationLockHeld(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()

	lost, release, err := s.Lock(ctx, "app", "alice@edge-ops pid 4242")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = s.Lock(ctx, "app", "bob@laptop pid 7")
	held, ok := IsLockHeld(err)
	if !ok {
		t.Fatalf("second Lock: got %v, want a *LockHeldError", err)
	}
	if held.Holder != "alice@edge-ops pid 4242" || !strings.Contains(err.Error(), "alice@edge-ops pid 4242") || held.Since.IsZero() {
		t.Fatalf("LockHeldError does not name the holder: %+v (%v)", held, err)
	}

	// LockWait gets it once the holder releases.
	type result struct {
		release func()
		err     error
	}
	got := make(chan result, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		_, rel, err := s.LockWait(wctx, "app", "bob@laptop pid 7")
		got <- result{rel, err}
	}()
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-got:
		t.Fatalf("LockWait returned while the lock was held: %v", r.err)
	default:
	}
	release()
	select {
	case <-lost:
	default:
		t.Fatal("lost is not closed after release")
	}
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatalf("LockWait: %v", r.err)
		}
		r.release()
	case <-time.After(15 * time.Second):
		t.Fatal("LockWait did not get the lock after it was released")
	}

	// LockWait gives up when its context ends, naming the holder.
	_, release2, err := s.Lock(ctx, "app", "carol@ci pid 1")
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, _, err = s.LockWait(wctx, "app", "dave")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "carol@ci pid 1") {
		t.Fatalf("LockWait with an ending context: %v", err)
	}
}

func TestIntegrationLockReleasedWhenSessionDestroyed(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()

	lost, release, err := s.Lock(ctx, "app", "killed-controller pid 1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, _, err = s.Lock(ctx, "app", "next")
	held, ok := IsLockHeld(err)
	if !ok || held.Session == "" {
		t.Fatalf("second Lock: %v", err)
	}
	// What Consul does when a holder stops renewing (SIGKILL), at once.
	if _, err := cc.Session().Destroy(held.Session, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the holder was not told that it lost the lock")
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	start := time.Now()
	_, release2, err := s.LockWait(wctx, "app", "next")
	if err != nil {
		t.Fatalf("LockWait after the holder's session ended: %v", err)
	}
	t.Logf("took over %s after the session ended (lock delay %s)", time.Since(start).Round(time.Millisecond), s.lockDelay)
	release2()
}

func TestIntegrationControls(t *testing.T) {
	s, _ := newTestStore(t)
	ctx := context.Background()

	if err := s.Approve(ctx, "app", nil); !errors.Is(err, ErrNoRun) {
		t.Fatalf("Approve without a run: %v, want ErrNoRun", err)
	}
	r := testRun("app")
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	c, idx, err := s.Controls(ctx, "app", 0, 0)
	if err != nil || c.Approval != nil || idx == 0 {
		t.Fatalf("Controls: %+v %d %v", c, idx, err)
	}

	type result struct {
		c   scheduler.Controls
		idx uint64
		err error
		at  time.Time
	}
	woke := make(chan result, 1)
	go func() {
		c, i, err := s.Controls(ctx, "app", idx, 30*time.Second)
		woke <- result{c, i, err, time.Now()}
	}()
	time.Sleep(300 * time.Millisecond)
	approved := time.Now()
	if err := s.Approve(ctx, "app", &scheduler.ApprovalRecord{Actor: "alice", Message: "canary looks good", Saw: "2/2 healthy"}); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-woke:
		if res.err != nil || res.c.Approval == nil || res.c.Approval.Actor != "alice" || res.c.Approval.Saw != "2/2 healthy" {
			t.Fatalf("blocking Controls woke with %+v, %v", res.c, res.err)
		}
		if res.idx <= idx {
			t.Fatalf("index did not move: %d -> %d", idx, res.idx)
		}
		t.Logf("woke %s after the approval", res.at.Sub(approved).Round(time.Millisecond))
		idx = res.idx
	case <-time.After(10 * time.Second):
		t.Fatal("blocking Controls did not wake on the approval")
	}
	if err := s.Approve(ctx, "app", &scheduler.ApprovalRecord{Actor: "bob"}); !errors.Is(err, ErrAlreadyRequested) || !strings.Contains(err.Error(), "alice") {
		t.Fatalf("second approval: %v", err)
	}

	// A blocking query ends with its context.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, _, err = s.Controls(cctx, "app", idx, time.Minute)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Controls after its context ended: %v", err)
	}

	if err := s.RequestResume(ctx, "app"); !errors.Is(err, ErrNotPaused) {
		t.Fatalf("resume without pause: %v", err)
	}
	if err := s.RequestPause(ctx, "app", &scheduler.Request{Reason: "lunch"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPause(ctx, "app", nil); !errors.Is(err, ErrAlreadyRequested) {
		t.Fatalf("second pause: %v", err)
	}
	if err := s.RequestRollback(ctx, "app", &scheduler.Request{Actor: "carol", Reason: "customer report"}); err != nil {
		t.Fatal(err)
	}
	c, _, err = s.Controls(ctx, "app", 0, 0)
	if err != nil || c.Pause == nil || c.Pause.Reason != "lunch" || c.Pause.Actor == "" || c.Rollback == nil || c.Rollback.Actor != "carol" {
		t.Fatalf("Controls: %+v %v", c, err)
	}
	if err := s.RequestResume(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearControls(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	c, _, err = s.Controls(ctx, "app", 0, 0)
	if err != nil || c.Approval != nil || c.Pause != nil || c.Rollback != nil {
		t.Fatalf("after ClearControls: %+v %v", c, err)
	}

	// Requests on a finished run are refused.
	r.Outcome = scheduler.OutcomeRolledBack
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := s.RequestRollback(ctx, "app", nil); !errors.Is(err, ErrNoRun) {
		t.Fatalf("rollback of a finished run: %v", err)
	}
}

// A controller killed with SIGKILL stops renewing its session: Consul
// invalidates it after its TTL (up to twice the TTL), the lock frees, and a
// waiting controller takes over after the lock delay.
func TestIntegrationLockTakenOverAfterHolderDies(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for a session TTL (10-20s)")
	}
	s, cc := newTestStore(t)
	ctx := context.Background()

	// The dead holder: a session and the lock, never renewed.
	sid, _, err := cc.Session().Create(&api.SessionEntry{TTL: "10s", Behavior: api.SessionBehaviorRelease, LockDelay: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Session().Destroy(sid, nil)
	val := fmt.Sprintf(`{"holder":"root@edge-ops pid 999","since":%q,"session":%q}`, time.Now().UTC().Format(time.RFC3339), sid)
	if ok, _, err := cc.KV().Acquire(&api.KVPair{Key: s.lockKey("app"), Value: []byte(val), Session: sid}, nil); err != nil || !ok {
		t.Fatalf("acquire as the dead holder: %v %v", ok, err)
	}
	_, _, err = s.Lock(ctx, "app", "next")
	if held, ok := IsLockHeld(err); !ok || held.Holder != "root@edge-ops pid 999" {
		t.Fatalf("Lock while the dead holder's session lives: %v", err)
	}
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	_, release, err := s.LockWait(wctx, "app", "next")
	if err != nil {
		t.Fatalf("LockWait: %v", err)
	}
	defer release()
	t.Logf("took over %s after the holder stopped renewing (TTL 10s)", time.Since(start).Round(100*time.Millisecond))
}

// Two appenders writing to one folder lose no record, keep every chunk
// within its limit, and write chunks that are plain JSON arrays at
// zero-padded sequence numbers (the audit trail's format).
func TestIntegrationAppenderConcurrentTail(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()
	folder := s.Layout().AuditTrail("app")
	limits := ChunkLimits{MaxRecords: 7, MaxBytes: 1 << 10}
	// A chunk written by json.Marshal before the appender existed.
	old, _ := json.Marshal([]map[string]int{{"w": 9, "i": 0}})
	if _, err := cc.KV().Put(&api.KVPair{Key: AuditChunk(folder, 0), Value: old}, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		a := NewAppender(cc, limits)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				rec, _ := json.Marshal(map[string]int{"w": w, "i": i})
				if err := a.Append(ctx, folder, rec); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	recs, err := ReadChunks[map[string]int](ctx, cc, folder)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 61 {
		t.Fatalf("%d records, want 61", len(recs))
	}
	pairs, _, err := cc.KV().List(folder, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		var chunk []json.RawMessage
		if err := json.Unmarshal(p.Value, &chunk); err != nil || len(chunk) > limits.MaxRecords || len(p.Value) > limits.MaxBytes {
			t.Errorf("chunk %s: %d records, %d bytes, %v", p.Key, len(chunk), len(p.Value), err)
		}
		if p.Key != AuditChunk(folder, i) {
			t.Errorf("chunk %d is named %s", i, p.Key)
		}
	}
}

// TestIntegrationWritesBoundToLockSession checks I8's store half: while a
// process holds a rollout's lock its state writes check the lock session
// in the same transaction, so once the session is gone (a controller
// paused past its TTL) not one write lands.
func TestIntegrationWritesBoundToLockSession(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()
	_, release, err := s.Lock(ctx, "app", "paused-controller")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	r := testRun("app")
	if err := s.SaveRollout(ctx, r); err != nil {
		t.Fatalf("write while holding the lock: %v", err)
	}
	_, _, err = New(cc, Options{Prefix: s.Prefix()}).Lock(ctx, "app", "other")
	held, ok := IsLockHeld(err)
	if !ok {
		t.Fatalf("second Lock: %v", err)
	}
	if _, err := cc.Session().Destroy(held.Session, nil); err != nil {
		t.Fatal(err)
	}
	before := r.Index
	r.Phase = scheduler.PhaseWave
	err = s.SaveRollout(ctx, r)
	if !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("write after the session was destroyed: %v, want ErrLockLost", err)
	}
	got, err := s.LoadState(ctx, "app")
	if err != nil || got.Phase != scheduler.PhaseCanary || got.Index != before {
		t.Fatalf("the state changed after the lock was lost: %+v (%v)", got, err)
	}
	dev := &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: "n1", Name: "n1"}, State: scheduler.DeviceSwitching}
	if err := s.SaveDevice(ctx, "app", dev); !errors.Is(err, scheduler.ErrLockLost) {
		t.Fatalf("device write after the lock was lost: %v, want ErrLockLost", err)
	}
}

// TestIntegrationCorruptChunkSkipped checks I9: a corrupt chunk does not
// stop later appends (they go on in a new chunk) and readers skip it,
// naming it, with every other record.
func TestIntegrationCorruptChunkSkipped(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()
	folder := s.Layout().AuditTrail("app")
	a := NewAppender(cc, ChunkLimits{MaxRecords: 5, MaxBytes: 1 << 10})
	first, _ := json.Marshal(map[string]int{"i": 1})
	if err := a.Append(ctx, folder, first); err != nil {
		t.Fatal(err)
	}
	// A torn write: the next chunk holds garbage.
	if _, err := cc.KV().Put(&api.KVPair{Key: AuditChunk(folder, 1), Value: []byte(`[{"i": 2}, {"i"`)}, nil); err != nil {
		t.Fatal(err)
	}
	later, _ := json.Marshal(map[string]int{"i": 3})
	if err := a.Append(ctx, folder, later); err != nil {
		t.Fatalf("append after a corrupt chunk: %v", err)
	}
	recs, err := ReadChunks[map[string]int](ctx, cc, folder)
	var corrupt *CorruptChunksError
	if !errors.As(err, &corrupt) || len(corrupt.Keys) != 1 || corrupt.Keys[0] != AuditChunk(folder, 1) {
		t.Fatalf("read: %v, want the corrupt chunk named", err)
	}
	if len(recs) != 2 || recs[0]["i"] != 1 || recs[1]["i"] != 3 {
		t.Fatalf("records %v, want the two good ones", recs)
	}
}

// txnGate is a transport that counts Consul transactions and holds the
// first one until release returns true (or 10 s pass).
type txnGate struct {
	mu      sync.Mutex
	txns    int
	release func() bool
}

func (g *txnGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Path == "/v1/txn" {
		g.mu.Lock()
		g.txns++
		first := g.txns == 1
		g.mu.Unlock()
		if first {
			deadline := time.Now().Add(10 * time.Second)
			for !g.release() && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	return http.DefaultTransport.RoundTrip(req)
}

// Concurrent appends to one folder are committed in groups: the records
// that arrive while a write is in progress share the next transaction,
// every call returns once its own record is written, and none is lost.
func TestIntegrationAppenderGroupCommit(t *testing.T) {
	s, cc := newTestStore(t)
	ctx := context.Background()
	folder := s.Layout().AuditTrail("app")
	const callers = 100
	var a *Appender
	gate := &txnGate{release: func() bool {
		// The first transaction waits until every other call queued.
		a.qmu.Lock()
		defer a.qmu.Unlock()
		b := a.queue[folder]
		return b != nil && len(b.recs) == callers-1
	}}
	cfg := api.DefaultConfig()
	if os.Getenv("CONSUL_HTTP_ADDR") == "" {
		cfg.Address = "127.0.0.1:8500"
	}
	cfg.HttpClient = &http.Client{Transport: gate}
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a = NewAppender(client, AuditChunks)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, _ := json.Marshal(map[string]int{"i": i})
			if err := a.Append(ctx, folder, rec); err != nil {
				t.Errorf("append %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	recs, err := ReadChunks[map[string]int](ctx, cc, folder)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, r := range recs {
		seen[r["i"]] = true
	}
	if len(recs) != callers || len(seen) != callers {
		t.Fatalf("%d records (%d distinct), want %d", len(recs), len(seen), callers)
	}
	if gate.txns != 2 {
		t.Fatalf("%d appends took %d transactions, want 2 (the first alone, the %d others together)", callers, gate.txns, callers-1)
	}
}
