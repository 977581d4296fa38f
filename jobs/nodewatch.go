package jobs

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/internal/blocking"
)

// nodeReader is the narrow view of Nomad the node watcher needs.
type nodeReader interface {
	// ListNodes lists the nodes the filter selects: a blocking query at
	// waitIndex (0: answer at once) for at most wait.
	ListNodes(ctx context.Context, filter string, waitIndex uint64, wait time.Duration) ([]nodeStub, uint64, error)
	// NodeInfo reads one node (its metadata is not in the list).
	NodeInfo(ctx context.Context, id string) (nodeState, error)
}

// nodeStub is what the node list says of a node.
type nodeStub struct {
	ID, Status  string
	ModifyIndex uint64
}

// nodeState is a node as the server reports it.
type nodeState struct {
	ID, Status  string
	Meta        map[string]string
	ModifyIndex uint64
}

// nodeUpdate is what a waiting switch receives: the node, or the error of
// the shared query (which says nothing about the device: see waitSlot).
type nodeUpdate struct {
	node nodeState
	err  error
}

// NodeWatcher is the one watcher of node updates that the in-flight
// switches share: a single blocking query on the node list, filtered on
// the nodes being waited for, open only while a switch waits. A node whose
// ModifyIndex moved is read once (its metadata is not in the list) and
// handed to the switches waiting for it. However many switches are in
// flight, one long-poll is open and each node change costs one list
// answer and one read of that node, instead of one blocking query per
// switch that every change of the fleet wakes.
type NodeWatcher struct {
	src         nodeReader
	timing      blocking.Timing
	callTimeout time.Duration
	logger      hclog.Logger

	open atomic.Int64

	mu sync.Mutex
	// subs are the waiting switches by node ID.
	subs map[string]map[*nodeSub]struct{}
	// known is the ModifyIndex of each subscribed node last read.
	known map[string]uint64
	// added is closed when a node joins the subscribed set (or the last
	// one leaves): the open query no longer covers what is waited for.
	added   chan struct{}
	running bool
}

type nodeSub struct {
	ch chan nodeUpdate
}

// NewNodeWatcher returns a node watcher on the client. It starts nothing
// until a switch waits.
func NewNodeWatcher(nc *api.Client, logger hclog.Logger) *NodeWatcher {
	return newNodeWatcher(apiNodes{nc}, slotSyncTiming, DefaultCallTimeout, logger)
}

func newNodeWatcher(src nodeReader, timing blocking.Timing, callTimeout time.Duration, logger hclog.Logger) *NodeWatcher {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &NodeWatcher{
		src:         src,
		timing:      timing,
		callTimeout: callTimeout,
		logger:      logger.Named("nodes"),
		subs:        map[string]map[*nodeSub]struct{}{},
		known:       map[string]uint64{},
		added:       make(chan struct{}),
	}
}

// OpenLongPolls is the number of blocking queries open right now (0 or 1).
func (w *NodeWatcher) OpenLongPolls() int { return int(w.open.Load()) }

// Wait hands each update of the node to check until it reports done or
// an error, or ctx ends. An update that carries an error of the shared
// query is not given to check: it is remembered, and Wait returns the
// last such error that no later answer cleared (nil when the last answer
// was good) along with ctx's error.
func (w *NodeWatcher) Wait(ctx context.Context, nodeID string, check func(nodeState) (bool, error)) (lastErr error, err error) {
	sub := w.subscribe(nodeID)
	defer w.unsubscribe(nodeID, sub)
	for {
		select {
		case <-ctx.Done():
			return lastErr, ctx.Err()
		case u := <-sub.ch:
			if u.err != nil {
				lastErr = u.err
				continue
			}
			lastErr = nil
			done, err := check(u.node)
			if done || err != nil {
				return nil, err
			}
		}
	}
}

func (w *NodeWatcher) subscribe(nodeID string) *nodeSub {
	sub := &nodeSub{ch: make(chan nodeUpdate, 1)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.subs[nodeID] == nil {
		w.subs[nodeID] = map[*nodeSub]struct{}{}
		w.wakeLocked()
	}
	w.subs[nodeID][sub] = struct{}{}
	// The new waiter needs the node's current state: read it again.
	delete(w.known, nodeID)
	if !w.running {
		w.running = true
		go w.run()
	}
	return sub
}

func (w *NodeWatcher) unsubscribe(nodeID string, sub *nodeSub) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.subs[nodeID], sub)
	if len(w.subs[nodeID]) == 0 {
		delete(w.subs, nodeID)
		delete(w.known, nodeID)
	}
	if len(w.subs) == 0 {
		// Nobody waits: close the open query now.
		w.wakeLocked()
	}
}

func (w *NodeWatcher) wakeLocked() {
	close(w.added)
	w.added = make(chan struct{})
}

// notifyLocked hands an update to every waiter of the node; a waiter that
// has not taken the previous one gets the latest instead.
func (w *NodeWatcher) notifyLocked(nodeID string, u nodeUpdate) {
	for sub := range w.subs[nodeID] {
		select {
		case <-sub.ch:
		default:
		}
		sub.ch <- u
	}
}

// broadcastLocked hands an error to every waiter.
func (w *NodeWatcher) broadcastLocked(err error) {
	for id := range w.subs {
		w.notifyLocked(id, nodeUpdate{err: err})
	}
}

// idFilter selects the nodes by ID.
func idFilter(ids []string) string {
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		parts = append(parts, "ID == "+strconv.Quote(id))
	}
	return strings.Join(parts, " or ")
}

// run follows the subscribed nodes until nobody waits.
func (w *NodeWatcher) run() {
	var (
		index     uint64
		filter    string
		lastStart time.Time
		failures  int
	)
	for {
		w.mu.Lock()
		if len(w.subs) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		ids := make([]string, 0, len(w.subs))
		for id := range w.subs {
			ids = append(ids, id)
		}
		added := w.added
		w.mu.Unlock()
		sort.Strings(ids)
		if f := idFilter(ids); f != filter {
			// Other nodes: an answer at once, then block on it.
			filter, index = f, 0
		}

		if d := w.timing.Pause(blocking.Clock{}, lastStart); d > 0 {
			// Subscriptions arriving meanwhile are batched.
			time.Sleep(d)
		}
		lastStart = time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		stop := make(chan struct{})
		go func() {
			select {
			case <-added:
				cancel()
			case <-stop:
			}
		}()
		w.open.Add(1)
		stubs, got, err := w.src.ListNodes(ctx, filter, index, w.timing.WaitTime)
		w.open.Add(-1)
		close(stop)
		interrupted := ctx.Err() != nil
		cancel()
		if interrupted {
			// The subscribed set changed: ask again with the new one.
			continue
		}
		if err != nil {
			failures++
			w.mu.Lock()
			w.broadcastLocked(err)
			w.mu.Unlock()
			d := w.timing.RetryIn(blocking.Clock{}, failures)
			w.logger.Debug("node list failed", "error", err, "failures", failures, "retry_in", d)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-added:
			}
			t.Stop()
			continue
		}
		failures = 0
		next, _ := blocking.NextIndex(index, got, index == 0)
		index = next
		w.readChanged(stubs)
	}
}

// nodeReadParallel bounds the node reads readChanged runs at once: when a
// wave's switches land together, hundreds of nodes change within seconds,
// and reading them one after the other delayed the last switches by the
// sum of the reads (12 s of a 13 s switch at 500 in flight).
const nodeReadParallel = 16

// readChanged reads the subscribed nodes whose ModifyIndex moved (up to
// nodeReadParallel at once) and hands each to its waiters as soon as it is
// read.
func (w *NodeWatcher) readChanged(stubs []nodeStub) {
	var todo []nodeStub
	w.mu.Lock()
	for _, s := range stubs {
		_, waited := w.subs[s.ID]
		seen, ok := w.known[s.ID]
		if waited && !(ok && seen == s.ModifyIndex) {
			todo = append(todo, s)
		}
	}
	w.mu.Unlock()
	if len(todo) == 1 {
		w.readNode(todo[0])
		return
	}
	sem := make(chan struct{}, nodeReadParallel)
	var wg sync.WaitGroup
	for _, s := range todo {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			w.readNode(s)
		}()
	}
	wg.Wait()
}

// readNode reads one node and hands it (or the error) to its waiters.
func (w *NodeWatcher) readNode(s nodeStub) {
	ctx, cancel := context.WithTimeout(context.Background(), w.callTimeout)
	n, err := w.src.NodeInfo(ctx, s.ID)
	cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.notifyLocked(s.ID, nodeUpdate{err: err})
	} else if _, still := w.subs[s.ID]; still {
		w.known[s.ID] = s.ModifyIndex
		w.notifyLocked(s.ID, nodeUpdate{node: n})
	}
}

// apiNodes is nodeReader on the Nomad client.
type apiNodes struct{ nc *api.Client }

func (a apiNodes) ListNodes(ctx context.Context, filter string, waitIndex uint64, wait time.Duration) ([]nodeStub, uint64, error) {
	q := (&api.QueryOptions{Filter: filter, WaitIndex: waitIndex, WaitTime: wait}).WithContext(ctx)
	nodes, meta, err := a.nc.Nodes().List(q)
	if err != nil {
		return nil, 0, err
	}
	out := make([]nodeStub, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, nodeStub{ID: n.ID, Status: n.Status, ModifyIndex: n.ModifyIndex})
	}
	return out, meta.LastIndex, nil
}

func (a apiNodes) NodeInfo(ctx context.Context, id string) (nodeState, error) {
	n, _, err := a.nc.Nodes().Info(id, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nodeState{}, err
	}
	if n == nil {
		return nodeState{}, errors.New("Nomad returned no node " + id)
	}
	return nodeState{ID: n.ID, Status: n.Status, Meta: n.Meta, ModifyIndex: n.ModifyIndex}, nil
}
