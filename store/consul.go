// Package store owns fleetplan's Consul KV: the rollouts and their
// archives, the operators' requests, the controller lock, the active slots,
// the device registry and its event log, the agents' health configuration,
// and the chunked logs (Appender) the audit trail is kept in. Every key is
// named by Layout (layout.go); other packages reach KV only through the
// store.
//
// Every write is a check-and-set on the Index the value was read at (0: the
// key must not exist) and a lost one returns an error wrapping
// scheduler.ErrConflict. Writes go through Consul transactions, which report
// the new modify index, so a caller can write again without reading.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/scheduler"
)

// DefaultPrefix is the root of everything fleetplan keeps in Consul KV.
const DefaultPrefix = "fleetplan/"

// MaxValueBytes is the largest value the store writes. Consul refuses values
// over 512 KiB and transaction bodies over 512 KiB, in which values travel
// base64-encoded (4/3 larger), so a value must stay under ~380 KiB to fit.
const MaxValueBytes = 360 << 10

// MaxTxnOps is the number of operations the store puts in one transaction
// (Consul 1.14 allows 128, older servers 64); MaxTxnBytes bounds the sum of
// their values (base64-encoded in the request body, limited to 512 KiB).
const (
	MaxTxnOps   = 64
	MaxTxnBytes = 360 << 10
)

// Errors of the operator requests and of LoadRun.
var (
	// ErrNoRun: there is no unfinished run of the rollout to act on.
	ErrNoRun = errors.New("no rollout run in progress")
	// ErrAlreadyRequested: the same request is already pending.
	ErrAlreadyRequested = errors.New("already requested")
	// ErrNotPaused: resume of a rollout that has no pause request.
	ErrNotPaused = errors.New("not paused")
	// ErrNotFound: no such run.
	ErrNotFound = errors.New("not found")
)

// Options configure a Consul store. The zero value is usable.
type Options struct {
	// Prefix is the KV root, "fleetplan/" by default. Tests use their own.
	Prefix string
	Logger hclog.Logger
	// SessionTTL is the TTL of the lock session (default and minimum 10s).
	// It is renewed every TTL/2. Consul invalidates a session whose holder
	// stopped renewing it (SIGKILL) after between one and two TTLs, so the
	// next controller takes over within 2*TTL + LockDelay (~21s).
	SessionTTL time.Duration
	// LockDelay is how long Consul refuses to hand a lock whose session
	// was invalidated to another session (default 1s).
	LockDelay time.Duration
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Consul is the scheduler.Store on Consul KV, plus the operators' requests,
// the archive of finished runs and the controller lock.
type Consul struct {
	client    *api.Client
	kv        *api.KV
	layout    Layout
	logger    hclog.Logger
	ttl       time.Duration
	lockDelay time.Duration
	now       func() time.Time
	// sessions holds the lock session of each rollout this process holds
	// (app -> session ID): the rollout's state writes check it in the same
	// transaction, so a controller that lost its lock writes nothing.
	sessions sync.Map
}

var _ scheduler.Store = (*Consul)(nil)

// New returns a store on the Consul client.
func New(client *api.Client, o Options) *Consul {
	c := &Consul{
		client:    client,
		kv:        client.KV(),
		layout:    NewLayout(o.Prefix),
		logger:    o.Logger,
		ttl:       o.SessionTTL,
		lockDelay: o.LockDelay,
		now:       o.Now,
	}
	if c.logger == nil {
		c.logger = hclog.NewNullLogger()
	}
	c.logger = c.logger.Named("store")
	if c.ttl < 10*time.Second {
		c.ttl = 10 * time.Second
	}
	if c.lockDelay == 0 {
		c.lockDelay = time.Second
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Prefix returns the KV root the store works under.
func (c *Consul) Prefix() string { return c.layout.Root() }

// Layout returns the KV layout the store works with.
func (c *Consul) Layout() Layout { return c.layout }

// Client returns the Consul client the store works with.
func (c *Consul) Client() *api.Client { return c.client }

// Key names (see Layout).

func (c *Consul) stateKey(app string) string      { return c.layout.State(app) }
func (c *Consul) devicesPrefix(app string) string { return c.layout.Devices(app) }
func (c *Consul) controlPrefix(app string) string { return c.layout.Controls(app) }
func (c *Consul) lockKey(app string) string       { return c.layout.Lock(app) }
func (c *Consul) historyPrefix(app string) string { return c.layout.History(app) }
func (c *Consul) appsPrefix() string              { return c.layout.Apps() }
func (c *Consul) appKey(app string) string        { return c.layout.App(app) }

// Control key names, under .../control/.
const (
	controlApproval = "approval"
	controlPause    = "pause"
	controlRollback = "rollback"
)

// checkName refuses names that would break the key layout.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s", what)
	}
	if strings.ContainsAny(s, "/\x00") || s == "." || s == ".." {
		return fmt.Errorf("invalid %s %q: it must not contain '/'", what, s)
	}
	return nil
}

// Load returns the current run of a rollout with its devices, or nil when
// there is none. It reads the state and then every device record under one
// prefix (two requests, whatever the fleet's size).
func (c *Consul) Load(ctx context.Context, app string) (*scheduler.Rollout, error) {
	r, err := c.LoadState(ctx, app)
	if err != nil || r == nil {
		return r, err
	}
	devs, err := c.loadDevices(ctx, app)
	if err != nil {
		return nil, err
	}
	r.Devices = devs
	return r, nil
}

// LoadState returns the current run of a rollout without its devices, or nil.
func (c *Consul) LoadState(ctx context.Context, app string) (*scheduler.Rollout, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	key := c.stateKey(app)
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading %s from Consul: %w", key, err)
	}
	if pair == nil {
		return nil, nil
	}
	var r scheduler.Rollout
	if err := json.Unmarshal(pair.Value, &r); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", key, err)
	}
	r.Index = pair.ModifyIndex
	return &r, nil
}

func (c *Consul) loadDevices(ctx context.Context, app string) (map[string]*scheduler.DeviceRecord, error) {
	prefix := c.devicesPrefix(app)
	pairs, _, err := c.kv.List(prefix, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", prefix, err)
	}
	devs := make(map[string]*scheduler.DeviceRecord, len(pairs))
	for _, p := range pairs {
		d := new(scheduler.DeviceRecord)
		if err := json.Unmarshal(p.Value, d); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", p.Key, err)
		}
		d.Index = p.ModifyIndex
		if d.ID == "" {
			d.ID = strings.TrimPrefix(p.Key, prefix)
		}
		devs[d.ID] = d
	}
	return devs, nil
}

// SaveRollout writes the run (not its devices) if it did not change since
// r.Index (0: it must not exist yet) and sets r.Index to the new index.
func (c *Consul) SaveRollout(ctx context.Context, r *scheduler.Rollout) error {
	if err := checkName("rollout name", r.App); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding rollout %s: %w", r.App, err)
	}
	idx, err := c.casBound(ctx, r.App, c.stateKey(r.App), data, r.Index)
	if err != nil {
		return err
	}
	r.Index = idx
	return nil
}

// SaveDevice writes one device record with check-and-set on d.Index and
// sets d.Index to the new index.
func (c *Consul) SaveDevice(ctx context.Context, app string, d *scheduler.DeviceRecord) error {
	if err := checkName("rollout name", app); err != nil {
		return err
	}
	if err := checkName("device ID", d.ID); err != nil {
		return err
	}
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("encoding device %s: %w", d.ID, err)
	}
	idx, err := c.casBound(ctx, app, c.devicesPrefix(app)+d.ID, data, d.Index)
	if err != nil {
		return err
	}
	d.Index = idx
	return nil
}

// SaveDevices writes device records in order, each with check-and-set on
// its Index, in transactions of at most MaxTxnOps operations and
// MaxTxnBytes of values: when this process holds the rollout's lock, each
// transaction checks it too, as SaveDevice does, so a controller that lost
// its lock writes nothing (an error wrapping scheduler.ErrLockLost). It sets
// the Index of the records written and returns how many of recs, from the
// first, were; a transaction is written whole or not at all, and the first
// one that fails stops it (a lost check-and-set wraps
// scheduler.ErrConflict).
func (c *Consul) SaveDevices(ctx context.Context, app string, recs []*scheduler.DeviceRecord) (int, error) {
	if err := checkName("rollout name", app); err != nil {
		return 0, err
	}
	values := make([][]byte, len(recs))
	for i, d := range recs {
		if err := checkName("device ID", d.ID); err != nil {
			return 0, err
		}
		data, err := json.Marshal(d)
		if err != nil {
			return 0, fmt.Errorf("encoding device %s: %w", d.ID, err)
		}
		if len(data) > MaxValueBytes {
			return 0, fmt.Errorf("the record of device %s is %d bytes, over the %d bytes a Consul KV value can safely hold", d.ID, len(data), MaxValueBytes)
		}
		values[i] = data
	}
	var lockCheck *api.TxnOp
	if v, ok := c.sessions.Load(app); ok {
		lockCheck = &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: c.lockKey(app), Session: v.(string)}}
	}
	prefix := c.devicesPrefix(app)
	done := 0
	for done < len(recs) {
		ops := make(api.TxnOps, 0, MaxTxnOps)
		if lockCheck != nil {
			ops = append(ops, lockCheck)
		}
		keys := make(map[string]int, MaxTxnOps) // key -> record
		size := 0
		end := done
		for end < len(recs) && len(ops) < MaxTxnOps && (end == done || size+len(values[end]) <= MaxTxnBytes) {
			key := prefix + recs[end].ID
			if _, dup := keys[key]; dup {
				if end == done {
					return done, fmt.Errorf("device %s is twice in the records to write to rollout %s", recs[end].ID, app)
				}
				break // the next transaction writes it again, at the index this one sets
			}
			keys[key] = end
			ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: values[end], Index: recs[end].Index}})
			size += len(values[end])
			end++
		}
		res, err := c.txn(ctx, ops)
		if err != nil {
			return done, fmt.Errorf("writing the records of devices %s to %s of rollout %s: %w", recs[done].ID, recs[end-1].ID, app, err)
		}
		idx := make(map[int]uint64, end-done)
		for _, r := range res {
			if r.KV == nil {
				continue
			}
			if i, ok := keys[r.KV.Key]; ok {
				idx[i] = r.KV.ModifyIndex
			}
		}
		if len(idx) != end-done {
			return done, fmt.Errorf("writing the records of devices %s to %s of rollout %s: Consul returned %d results for %d writes", recs[done].ID, recs[end-1].ID, app, len(idx), end-done)
		}
		for i, v := range idx {
			recs[i].Index = v
		}
		done = end
	}
	return done, nil
}

// ActiveSlot returns which slot of an application runs the stable version,
// or nil when none does yet.
func (c *Consul) ActiveSlot(ctx context.Context, app string) (*scheduler.ActiveSlot, error) {
	if err := checkName("application name", app); err != nil {
		return nil, err
	}
	key := c.appKey(app)
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading %s from Consul: %w", key, err)
	}
	if pair == nil {
		return nil, nil
	}
	s := new(scheduler.ActiveSlot)
	if err := json.Unmarshal(pair.Value, s); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", key, err)
	}
	s.Index = pair.ModifyIndex
	return s, nil
}

// ActiveSlots returns the active slot of every application, keyed by
// application name, in one request.
func (c *Consul) ActiveSlots(ctx context.Context) (map[string]*scheduler.ActiveSlot, error) {
	prefix := c.appsPrefix()
	pairs, _, err := c.kv.List(prefix, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("listing %s in Consul: %w", prefix, err)
	}
	out := make(map[string]*scheduler.ActiveSlot, len(pairs))
	for _, p := range pairs {
		app := strings.TrimPrefix(p.Key, prefix)
		if app == "" || strings.Contains(app, "/") {
			continue
		}
		s := new(scheduler.ActiveSlot)
		if err := json.Unmarshal(p.Value, s); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", p.Key, err)
		}
		s.Index = p.ModifyIndex
		out[app] = s
	}
	return out, nil
}

// SetActiveSlot records the active slot with check-and-set on s.Index.
func (c *Consul) SetActiveSlot(ctx context.Context, app string, s *scheduler.ActiveSlot) error {
	if err := checkName("application name", app); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding active slot of %s: %w", app, err)
	}
	idx, err := c.casBound(ctx, app, c.appKey(app), data, s.Index)
	if err != nil {
		return err
	}
	s.Index = idx
	return nil
}

// query returns read options bound to ctx.
func (c *Consul) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

// cas writes one key with check-and-set and returns its new modify index.
func (c *Consul) cas(ctx context.Context, key string, value []byte, index uint64) (uint64, error) {
	if len(value) > MaxValueBytes {
		return 0, fmt.Errorf("value of %s is %d bytes, over the %d bytes a Consul KV value can safely hold", key, len(value), MaxValueBytes)
	}
	res, err := c.txn(ctx, api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: value, Index: index}}})
	if err != nil {
		return 0, err
	}
	if len(res) != 1 || res[0].KV == nil {
		return 0, fmt.Errorf("writing %s: Consul returned no result", key)
	}
	return res[0].KV.ModifyIndex, nil
}

// txn runs a transaction. When Consul rolls it back, the error wraps
// scheduler.ErrConflict if a check-and-set lost (verified by reading the key
// again, not by parsing Consul's message).
func (c *Consul) txn(ctx context.Context, ops api.TxnOps) (api.TxnResults, error) {
	return runTxn(ctx, c.client, ops)
}

// Txn runs a KV transaction of at most 64 operations on client. When Consul
// rolls it back because a check-and-set operation (cas, delete-cas,
// check-index, check-not-exists) lost, the error wraps scheduler.ErrConflict;
// that is verified by reading the key again, not by parsing Consul's message.
func Txn(ctx context.Context, client *api.Client, ops api.TxnOps) (api.TxnResults, error) {
	return runTxn(ctx, client, ops)
}

func runTxn(ctx context.Context, client *api.Client, ops api.TxnOps) (api.TxnResults, error) {
	ok, resp, _, err := client.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul transaction (%s): %w", describeOps(ops), err)
	}
	if ok {
		return resp.Results, nil
	}
	return nil, txnFailure(ctx, client, ops, resp.Errors)
}

// txnFailure explains a rolled-back transaction.
func txnFailure(ctx context.Context, client *api.Client, ops api.TxnOps, errs api.TxnErrors) error {
	var msgs []string
	for _, e := range errs {
		if e.OpIndex >= 0 && e.OpIndex < len(ops) && ops[e.OpIndex].KV != nil {
			op := ops[e.OpIndex].KV
			if op.Verb == api.KVCheckSession {
				return fmt.Errorf("%w: session %s no longer holds %s (%s)", scheduler.ErrLockLost, op.Session, op.Key, e.What)
			}
			if conflict := casLost(ctx, client, op); conflict != nil {
				return conflict
			}
		}
		msgs = append(msgs, e.What)
	}
	return fmt.Errorf("consul rolled back the transaction (%s): %s", describeOps(ops), strings.Join(msgs, "; "))
}

// casLost returns an ErrConflict error when the key of a check-and-set
// operation is no longer at the index the operation expected.
func casLost(ctx context.Context, client *api.Client, op *api.KVTxnOp) error {
	if op.Verb != api.KVCAS && op.Verb != api.KVDeleteCAS && op.Verb != api.KVCheckIndex && op.Verb != api.KVCheckNotExists {
		return nil
	}
	want := op.Index
	if op.Verb == api.KVCheckNotExists {
		want = 0
	}
	pair, _, err := client.KV().Get(op.Key, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil
	}
	var now uint64
	if pair != nil {
		now = pair.ModifyIndex
	}
	switch {
	case want == 0 && pair != nil:
		return fmt.Errorf("%s already exists (index %d): %w", op.Key, now, scheduler.ErrConflict)
	case want != 0 && pair == nil:
		return fmt.Errorf("%s was deleted (expected index %d): %w", op.Key, want, scheduler.ErrConflict)
	case want != 0 && now != want:
		return fmt.Errorf("%s is at index %d, expected %d: %w", op.Key, now, want, scheduler.ErrConflict)
	}
	return nil
}

func describeOps(ops api.TxnOps) string {
	if len(ops) == 1 && ops[0].KV != nil {
		return string(ops[0].KV.Verb) + " " + ops[0].KV.Key
	}
	return fmt.Sprintf("%d operations", len(ops))
}

// DefaultActor names the operator: user@host.
func DefaultActor() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	} else if v := os.Getenv("USER"); v != "" {
		name = v
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return name + "@" + host
}

// DefaultHolder names this process as a lock holder: user@host pid N.
func DefaultHolder() string {
	return fmt.Sprintf("%s pid %d", DefaultActor(), os.Getpid())
}

// casBound is cas bound to the rollout's lock: when this process holds the
// lock of app, the write and a check that the lock key is still held by
// its session go in one transaction, so a controller that lost its lock
// (its session expired while it was paused, say) writes nothing; the error
// wraps scheduler.ErrLockLost.
func (c *Consul) casBound(ctx context.Context, app, key string, value []byte, index uint64) (uint64, error) {
	v, ok := c.sessions.Load(app)
	if !ok {
		return c.cas(ctx, key, value, index)
	}
	if len(value) > MaxValueBytes {
		return 0, fmt.Errorf("value of %s is %d bytes, over the %d bytes a Consul KV value can safely hold", key, len(value), MaxValueBytes)
	}
	ops := api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: c.lockKey(app), Session: v.(string)}},
		{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: key, Value: value, Index: index}},
	}
	res, err := c.txn(ctx, ops)
	if err != nil {
		return 0, err
	}
	for i := len(res) - 1; i >= 0; i-- {
		if res[i].KV != nil && res[i].KV.Key == key {
			return res[i].KV.ModifyIndex, nil
		}
	}
	return 0, fmt.Errorf("writing %s: Consul returned no result", key)
}
