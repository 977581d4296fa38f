package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/internal/blocking"
)

// fakeNodes is a node list with blocking-query semantics: one index, list
// calls that block until it passes their wait index.
type fakeNodes struct {
	mu       sync.Mutex
	index    uint64
	changed  chan struct{}
	nodes    map[string]nodeState
	listErr  error
	inFlight int
	maxOpen  int
	lists    int
	infos    map[string]int
	// infoDelay is how long a node read takes (a loaded server);
	// infoOpen, maxInfoOpen count the reads in progress.
	infoDelay   time.Duration
	infoOpen    int
	maxInfoOpen int
}

func newFakeNodes(n int) *fakeNodes {
	f := &fakeNodes{index: 5, changed: make(chan struct{}), nodes: map[string]nodeState{}, infos: map[string]int{}}
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		f.nodes[id] = nodeState{ID: id, Status: "ready", Meta: map[string]string{}, ModifyIndex: 1}
	}
	return f
}

func (f *fakeNodes) set(id, key, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.index++
	n := f.nodes[id]
	m := map[string]string{}
	for k, v := range n.Meta {
		m[k] = v
	}
	m[key] = value
	n.Meta, n.ModifyIndex = m, f.index
	f.nodes[id] = n
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeNodes) ListNodes(ctx context.Context, filter string, waitIndex uint64, wait time.Duration) ([]nodeStub, uint64, error) {
	f.mu.Lock()
	f.lists++
	f.inFlight++
	if f.inFlight > f.maxOpen {
		f.maxOpen = f.inFlight
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	timeout := time.After(wait)
	for {
		f.mu.Lock()
		idx, ch, err := f.index, f.changed, f.listErr
		if err != nil {
			f.mu.Unlock()
			return nil, 0, err
		}
		if waitIndex < idx {
			var out []nodeStub
			for id, n := range f.nodes {
				if strings.Contains(filter, `"`+id+`"`) {
					out = append(out, nodeStub{ID: id, Status: n.Status, ModifyIndex: n.ModifyIndex})
				}
			}
			f.mu.Unlock()
			return out, idx, nil
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-timeout:
			return nil, idx, nil
		}
	}
}

func (f *fakeNodes) NodeInfo(ctx context.Context, id string) (nodeState, error) {
	f.mu.Lock()
	f.infoOpen++
	f.maxInfoOpen = max(f.maxInfoOpen, f.infoOpen)
	delay := f.infoDelay
	f.mu.Unlock()
	if delay > 0 {
		time.Sleep(delay) // the server's latency, not a wait for a condition
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.infoOpen--
	f.infos[id]++
	n, ok := f.nodes[id]
	if !ok {
		return nodeState{}, errors.New("404 node not found")
	}
	return n, nil
}

// waitGreen starts a switch's wait on each of nodes node-0..node-(n-1),
// until the node's slot is green; done waits for them all and reports
// their errors.
func waitGreen(ctx context.Context, t *testing.T, w *NodeWatcher, n int) (done func()) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := w.Wait(ctx, id, func(s nodeState) (bool, error) { return s.Meta["slot"] == "green", nil })
			if err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
			}
		}()
	}
	return func() {
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
}

var testNodeTiming = blocking.Timing{MinInterval: time.Millisecond, BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, WaitTime: 5 * time.Second}

// Many switches wait at once: one blocking query serves them all, each
// sees its own node's value, and the watcher closes its query when
// nobody waits any more.
func TestNodeWatcherSharedByParallelSwitches(t *testing.T) {
	const n = 40
	f := newFakeNodes(n)
	w := newNodeWatcher(f, testNodeTiming, time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	done := waitGreen(ctx, t, w, n)
	// Every switch waits before the nodes change.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		w.mu.Lock()
		waiting := len(w.subs)
		w.mu.Unlock()
		if waiting == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d switches waiting", waiting, n)
		}
	}
	// Every node switches, one after the other.
	for i := range n {
		f.set(fmt.Sprintf("node-%d", i), "slot", "green")
	}
	done()
	f.mu.Lock()
	maxOpen, lists := f.maxOpen, f.lists
	var reads int
	for _, c := range f.infos {
		reads += c
	}
	f.mu.Unlock()
	if maxOpen != 1 {
		t.Errorf("%d node list queries open at once, want 1", maxOpen)
	}
	// Each node is read when it is first waited for and when it changed:
	// a small constant per switch, not one per change of the fleet.
	if reads > 3*n {
		t.Errorf("%d node reads for %d switches", reads, n)
	}
	t.Logf("%d switches: %d list calls, %d node reads", n, lists, reads)
	deadline := time.Now().Add(5 * time.Second)
	for w.OpenLongPolls() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d long-polls still open with nobody waiting", w.OpenLongPolls())
		}
		time.Sleep(time.Millisecond)
	}
}

// An error of the shared query is neither a pass nor a failure: the
// waiter keeps waiting and learns the last error at its deadline; a later
// good answer clears it.
func TestNodeWatcherErrorIsNoVerdict(t *testing.T) {
	f := newFakeNodes(1)
	f.listErr = errors.New("500 rpc error: no leader")
	w := newNodeWatcher(f, testNodeTiming, time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	checked := false
	lastErr, err := w.Wait(ctx, "node-0", func(nodeState) (bool, error) { checked = true; return true, nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the deadline", err)
	}
	if lastErr == nil || !strings.Contains(lastErr.Error(), "no leader") {
		t.Errorf("lastErr = %v, want the list error", lastErr)
	}
	if checked {
		t.Error("an error was handed to the check as a node")
	}

	// The server answers again: the waiter sees the node.
	f.mu.Lock()
	f.listErr = nil
	f.mu.Unlock()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	go f.set("node-0", "slot", "blue")
	lastErr, err = w.Wait(ctx2, "node-0", func(s nodeState) (bool, error) { return s.Meta["slot"] == "blue", nil })
	if err != nil || lastErr != nil {
		t.Errorf("after recovery: %v, %v", lastErr, err)
	}
}

// A check that reports an error ends the wait with it (the node went down).
func TestNodeWatcherCheckError(t *testing.T) {
	f := newFakeNodes(1)
	w := newNodeWatcher(f, testNodeTiming, time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want := errors.New("node is down")
	_, err := w.Wait(ctx, "node-0", func(nodeState) (bool, error) { return false, want })
	if !errors.Is(err, want) {
		t.Errorf("err = %v", err)
	}
}

// A wave's nodes change together: the watcher reads them in parallel, at
// most nodeReadParallel at once, so the last switch does not wait for the
// reads of all the others; every switch still sees its own node.
func TestNodeWatcherReadsChangedNodesInParallel(t *testing.T) {
	const n = 64
	f := newFakeNodes(n)
	f.infoDelay = 20 * time.Millisecond
	w := newNodeWatcher(f, testNodeTiming, time.Second, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := waitGreen(ctx, t, w, n)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		w.mu.Lock()
		waiting, known := len(w.subs), len(w.known)
		w.mu.Unlock()
		if waiting == n && known == n {
			break // every waiter's first read is done
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d switches waiting, %d read", waiting, n, known)
		}
	}
	// Every node changes in one index: one list answer holds them all.
	f.mu.Lock()
	f.index++
	for id, nd := range f.nodes {
		nd.Meta = map[string]string{"slot": "green"}
		nd.ModifyIndex = f.index
		f.nodes[id] = nd
	}
	f.maxInfoOpen = 0
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	done()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maxInfoOpen < 2 || f.maxInfoOpen > nodeReadParallel {
		t.Errorf("%d node reads at once, want between 2 and %d", f.maxInfoOpen, nodeReadParallel)
	}
}
