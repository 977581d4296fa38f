package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// Defaults of the Nomad deadlines.
const (
	// DefaultSyncTimeout bounds step 2 of a switch: a client batches its
	// metadata updates to the server for up to 10 s (5.4–9.9 s measured on
	// the dev cluster, Nomad 1.6.1).
	DefaultSyncTimeout = 60 * time.Second
	// DefaultCallTimeout bounds each single call a switch makes (the
	// metadata apply the server forwards to the device, listing and
	// stopping allocations).
	DefaultCallTimeout = 15 * time.Second
)

// Nomad is the Nomad side of one application's rollouts: it implements
// scheduler.Cluster on the two slot jobs. It is safe for concurrent use;
// switches of the same device are serialized.
type Nomad struct {
	nc     *api.Client
	policy *scheduler.Policy
	base   *api.Job
	logger hclog.Logger

	// SyncTimeout bounds the wait for the server to report a device's new
	// slot metadata (step 2); CallTimeout bounds every other call of a
	// switch. Set them before the first call.
	SyncTimeout time.Duration
	CallTimeout time.Duration
	// Fence, when set, is asked right before every Nomad write (the job
	// registration, each node metadata update, each allocation stop, the
	// job stop): an error (wrapping scheduler.ErrLockLost) stops the call
	// before it is made. The controller's fence runs before each cluster
	// action already; this one also covers the later steps of a switch,
	// seconds after it began.
	Fence func() error

	devices sync.Map // node ID -> *sync.Mutex
	// nodes is the one watcher of node updates the switches in flight
	// share (step 2).
	nodes *NodeWatcher
}

var _ scheduler.Cluster = (*Nomad)(nil)

// NewNomad returns the Nomad side of the rollouts of policy's application,
// whose parsed jobspec (ParseJobspec) is base.
func NewNomad(nc *api.Client, policy *scheduler.Policy, base *api.Job, logger hclog.Logger) *Nomad {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Nomad{
		nc:          nc,
		policy:      policy,
		base:        base,
		logger:      logger.Named("jobs").With("app", policy.Name),
		SyncTimeout: DefaultSyncTimeout,
		CallTimeout: DefaultCallTimeout,
		nodes:       NewNodeWatcher(nc, logger.Named("jobs").With("app", policy.Name)),
	}
}

// NodeWatcher is the watcher of node updates the switches share.
func (n *Nomad) NodeWatcher() *NodeWatcher { return n.nodes }

// PrepareCandidate compiles the candidate slot job of the run (r.Candidate,
// r.ID, the policy's version) and registers it. It does nothing when the
// registered job already has that spec (a resumed controller calls it
// again), and it never reads or writes the active slot's job.
func (n *Nomad) PrepareCandidate(ctx context.Context, r *scheduler.Rollout) error {
	app := n.policy.Name
	switch {
	case r.App != "" && r.App != app:
		return fmt.Errorf("preparing the candidate: rollout %q is for application %q, this cluster handle for %q", r.ID, r.App, app)
	case r.Version != "" && r.Version != n.policy.Release.Version:
		return fmt.Errorf("preparing the candidate of %s: the rollout's version %q is not the policy's %q", app, r.Version, n.policy.Release.Version)
	case r.Candidate == r.Active:
		return fmt.Errorf("preparing the candidate of %s: the candidate slot %q is the active slot", app, r.Candidate)
	}
	job, err := Compile(n.base, n.policy, r.Candidate, r.ID)
	if err != nil {
		return err
	}
	fence(job, r.Fenced)
	id := *job.ID
	log := n.logger.With("job", id, "rollout", r.ID)

	existing, _, err := n.nc.Jobs().Info(id, n.query(ctx))
	switch {
	case isNotFound(err):
		existing = nil
	case err != nil:
		return fmt.Errorf("reading slot job %s: %w", id, controlPlane(ctx, err))
	}
	var index uint64
	if existing != nil {
		if existing.JobModifyIndex != nil {
			index = *existing.JobModifyIndex
		}
		same, err := n.sameSpec(ctx, job, existing)
		if err != nil {
			return fmt.Errorf("comparing slot job %s with the registered one: %w", id, controlPlane(ctx, err))
		}
		if same {
			log.Info("slot job already registered with this spec", "version", job.Meta[contract.MetaVersion])
			return nil
		}
	}
	if err := n.fenced(); err != nil {
		return fmt.Errorf("registering slot job %s: not done: %w", id, err)
	}
	// EnforceIndex: fail rather than overwrite a change made since we read.
	resp, _, err := n.nc.Jobs().RegisterOpts(job, &api.RegisterOptions{EnforceIndex: true, ModifyIndex: index}, n.write(ctx))
	if err != nil {
		return fmt.Errorf("registering slot job %s: %w", id, controlPlane(ctx, err))
	}
	log.Info("registered slot job", "version", job.Meta[contract.MetaVersion], "eval_id", resp.EvalID, "warnings", resp.Warnings)
	return nil
}

// fenced asks Fence, when set, whether this controller may still act.
func (n *Nomad) fenced() error {
	if n.Fence == nil {
		return nil
	}
	return n.Fence()
}

// sameSpec asks the server whether registering job would change the
// registered one (a plan with diff, so the server's own canonicalization
// decides).
func (n *Nomad) sameSpec(ctx context.Context, job, existing *api.Job) (bool, error) {
	if existing.Stop != nil && *existing.Stop {
		return false, nil
	}
	plan, _, err := n.nc.Jobs().Plan(job, true, n.write(ctx))
	if err != nil {
		return false, err
	}
	return plan.Diff != nil && plan.Diff.Type == "None", nil
}

// SwitchDevice moves one device from slot `from` to slot `to` in four
// steps. A slot value is "", "blue", "green", or the two colours for a
// blue-green hot standby ("blue,green"):
//
//  1. set the node's dynamic metadata fleetplan.<app>.slot to `to` (remove
//     it when `to` is "");
//  2. wait (blocking queries, SyncTimeout) until the server reports it;
//  3. stop the live allocations on the node of every slot `from` names and
//     `to` does not (none when `to` still contains `from`);
//  4. return: Nomad places the `to` slot (the metadata change made a node
//     update evaluation) and the controller watches placement and health.
//
// Every step is idempotent: a switch interrupted at any point is finished by
// calling it again. A device whose client cannot be reached gives an error
// wrapping scheduler.ErrDeviceOffline; a Nomad server that answers 5xx or
// 429 or does not answer (timeouts, refused or reset connections) gives one
// wrapping scheduler.ErrControlPlane (invariant I5: retried, then the
// rollout pauses; never a device failure). What remains is the device's:
// the server answered, and its node never showed the metadata its client
// accepted within SyncTimeout. Errors name the device and the step.
func (n *Nomad) SwitchDevice(ctx context.Context, dev scheduler.DeviceRef, from, to string) error {
	if dev.ID == "" {
		return fmt.Errorf("switching %s: the device has no Nomad node ID", deviceName(dev))
	}
	for _, s := range []string{from, to} {
		if err := validSlotValue(s); err != nil {
			return fmt.Errorf("switching %s: %w", deviceName(dev), err)
		}
	}
	mu, _ := n.devices.LoadOrStore(dev.ID, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()

	log := n.logger.With("device", dev.Name, "node_id", dev.ID, "from", from, "to", to)
	start := time.Now()

	fail := func(step SwitchStep, op string, err error) error {
		// I5: what says nothing about the device is the control plane's.
		err = controlPlane(ctx, err)
		log.Warn("device switch failed", "step", int(step), "error", err)
		return &SwitchError{Device: dev, Step: step, Op: op + " " + deviceName(dev), Err: err}
	}

	// Before anything: is the device there at all?
	node, err := n.node(ctx, dev)
	if err != nil {
		return fail(StepLookup, "looking up", err)
	}
	if nodeUnreachable(node.Status) {
		return fail(StepLookup, "looking up", fmt.Errorf("node is %s: %w", node.Status, scheduler.ErrDeviceOffline))
	}

	// 1. The metadata.
	if err := n.applySlot(ctx, dev, to); err != nil {
		return fail(StepMetadata, "setting slot metadata on", err)
	}
	applied := time.Now()
	log.Debug("slot metadata applied", "took", applied.Sub(start))

	// 2. The server's view of it.
	if err := n.waitSlot(ctx, dev, to); err != nil {
		return fail(StepSync, "waiting for the Nomad server to report slot "+slotName(to)+" on", err)
	}
	synced := time.Now()
	log.Debug("server reports the new slot", "took", synced.Sub(applied))

	// 3. The old slot's allocations.
	var stopped []string
	if old := slotsLeaving(from, to); len(old) > 0 {
		stopped, err = n.stopSlots(ctx, dev, old)
		if err != nil {
			return fail(StepStop, "stopping slot "+strings.Join(old, ",")+" on", err)
		}
	}
	log.Info("device switched", "apply", applied.Sub(start).Round(time.Millisecond),
		"sync", synced.Sub(applied).Round(time.Millisecond), "stopped", stopped,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// SwitchStep is where a device switch stopped.
type SwitchStep int

const (
	// StepLookup: nothing was changed.
	StepLookup SwitchStep = iota
	// StepMetadata (1): the device's client may or may not have the new
	// slot value (it has not when the server had no connection to it).
	StepMetadata
	// StepSync (2): the device's client has the new slot value; the
	// server did not report it (yet). A device that comes back runs the
	// new slot unless it is switched back.
	StepSync
	// StepStop (3): the server runs the new slot on the device; the old
	// slot's allocation may still run beside it.
	StepStop
)

// SwitchError is the error of SwitchDevice: which device, at which step. It
// wraps the cause (scheduler.ErrDeviceOffline when the device could not be
// reached).
type SwitchError struct {
	Device scheduler.DeviceRef
	Step   SwitchStep
	// Op says what was being done, with the device, e.g. "setting slot
	// metadata on jetson-1 (node 1234abcd)".
	Op  string
	Err error
}

func (e *SwitchError) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *SwitchError) Unwrap() error { return e.Err }

// node reads a device's node from the server. A node Nomad does not know
// (garbage-collected after a long absence) cannot be reached either.
func (n *Nomad) node(ctx context.Context, dev scheduler.DeviceRef) (*api.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, n.CallTimeout)
	defer cancel()
	node, _, err := n.nc.Nodes().Info(dev.ID, n.query(cctx))
	if isNotFound(err) {
		return nil, fmt.Errorf("Nomad does not know node %s: %w", dev.ID, scheduler.ErrDeviceOffline)
	}
	return node, err
}

// applySlot is step 1. The server forwards the request to the device's
// client, so an unreachable client shows up here.
func (n *Nomad) applySlot(ctx context.Context, dev scheduler.DeviceRef, to string) error {
	req := &api.NodeMetaApplyRequest{NodeID: dev.ID, Meta: map[string]*string{contract.SlotMetaKey(n.policy.Name): nil}}
	if to != "" {
		req.Meta[contract.SlotMetaKey(n.policy.Name)] = new(to)
	}
	if err := n.fenced(); err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, n.CallTimeout)
	defer cancel()
	_, err := n.nc.Nodes().Meta().Apply(req, n.query(cctx))
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isNotFound(err) {
		return fmt.Errorf("the server has no connection to the device's client (%w): %w", err, scheduler.ErrDeviceOffline)
	}
	// Anything else: offline if the server now sees the node gone, or if
	// the server answers but the device's client did not within the
	// deadline.
	node, nerr := n.node(ctx, dev)
	switch {
	case nerr != nil:
		return errors.Join(err, nerr)
	case nodeUnreachable(node.Status):
		return fmt.Errorf("%w (node is %s): %w", err, node.Status, scheduler.ErrDeviceOffline)
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("the device's client did not answer within %s: %w", n.CallTimeout, scheduler.ErrDeviceOffline)
	}
	return err
}

// slotSyncTiming paces the shared node watcher (step 2). The node index
// moves with every node of the fleet, so a minimum interval keeps the
// calls few; failed calls back off from 250 ms to 5 s.
var slotSyncTiming = blocking.Timing{
	MinInterval: 75 * time.Millisecond,
	BackoffBase: 250 * time.Millisecond,
	BackoffMax:  5 * time.Second,
	WaitTime:    10 * time.Second,
}

// waitSlot is step 2: it waits, on the shared node watcher, until the
// server reports the slot value, the node goes away, or SyncTimeout
// passes.
func (n *Nomad) waitSlot(ctx context.Context, dev scheduler.DeviceRef, to string) error {
	key := contract.SlotMetaKey(n.policy.Name)
	wctx, cancel := context.WithTimeout(ctx, n.SyncTimeout)
	defer cancel()
	seen := "(not read)"
	lastErr, err := n.nodes.Wait(wctx, dev.ID, func(node nodeState) (bool, error) {
		value, ok := node.Meta[key]
		if ok && value == to || !ok && to == "" {
			return true, nil
		}
		seen = "no value"
		if ok {
			seen = fmt.Sprintf("%q", value)
		}
		if nodeUnreachable(node.Status) {
			return false, fmt.Errorf("node is %s: %w", node.Status, scheduler.ErrDeviceOffline)
		}
		return false, nil
	})
	if err == nil || wctx.Err() == nil {
		// Reported, or the node is gone.
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The deadline passed: was it the device, or a server that did not
	// answer (lastErr is the latest query's, nil when it answered)?
	msg := fmt.Sprintf("not reported within %s (the server has %s)", n.SyncTimeout, seen)
	if lastErr != nil && !errors.Is(lastErr, context.DeadlineExceeded) && isControlPlaneError(lastErr) {
		return fmt.Errorf("%s; the server's last answer: %w: %w", msg, scheduler.ErrControlPlane, lastErr)
	}
	if lastErr != nil {
		msg += fmt.Sprintf("; last error: %v", lastErr)
	}
	if node, err := n.node(ctx, dev); err == nil && nodeUnreachable(node.Status) {
		return fmt.Errorf("%s; node is %s: %w", msg, node.Status, scheduler.ErrDeviceOffline)
	} else if errors.Is(err, scheduler.ErrDeviceOffline) {
		return fmt.Errorf("%s: %w", msg, err)
	}
	cctx, cancel2 := context.WithTimeout(ctx, n.CallTimeout)
	defer cancel2()
	if _, err := n.nc.Nodes().Meta().Read(dev.ID, n.query(cctx)); isNotFound(err) {
		return fmt.Errorf("%s; the server has no connection to the device's client: %w", msg, scheduler.ErrDeviceOffline)
	}
	return errors.New(msg)
}

// stopSlots is step 3: it stops the live allocations of the slot jobs on
// the device (server-side, so it works whether the device is up or not) and
// returns their IDs. Allocations already told to stop are left alone.
func (n *Nomad) stopSlots(ctx context.Context, dev scheduler.DeviceRef, slots []string) ([]string, error) {
	jobIDs := make([]string, len(slots))
	for i, s := range slots {
		jobIDs[i] = contract.SlotJobID(n.policy.Name, s)
	}
	cctx, cancel := context.WithTimeout(ctx, n.CallTimeout)
	defer cancel()
	allocs, _, err := n.nc.Nodes().Allocations(dev.ID, n.query(cctx))
	if err != nil {
		return nil, fmt.Errorf("listing the node's allocations: %w", err)
	}
	var stopped []string
	for _, a := range allocs {
		if !slices.Contains(jobIDs, a.JobID) || !live(a.DesiredStatus, a.ClientStatus) {
			continue
		}
		if err := n.fenced(); err != nil {
			return stopped, err
		}
		if _, err := n.nc.Allocations().Stop(&api.Allocation{ID: a.ID}, n.query(cctx)); err != nil && !isNotFound(err) {
			return stopped, fmt.Errorf("stopping allocation %s of %s: %w", shortID(a.ID), a.JobID, err)
		}
		stopped = append(stopped, shortID(a.ID))
	}
	return stopped, nil
}

// live reports whether an allocation runs or is about to, and nobody asked
// it to stop yet.
func live(desired, client string) bool {
	if desired != api.AllocDesiredStatusRun {
		return false
	}
	switch client {
	case api.AllocClientStatusComplete, api.AllocClientStatusFailed, api.AllocClientStatusLost:
		return false
	}
	return true
}

// SlotOfNode returns the slot value the Nomad server reports for the
// application on a node ("" when none).
func (n *Nomad) SlotOfNode(ctx context.Context, nodeID string) (string, error) {
	node, _, err := n.nc.Nodes().Info(nodeID, n.query(ctx))
	if err != nil {
		return "", fmt.Errorf("reading node %s: %w", shortID(nodeID), controlPlane(ctx, err))
	}
	return node.Meta[contract.SlotMetaKey(n.policy.Name)], nil
}

// SlotAlloc is one allocation of an application's slot jobs.
type SlotAlloc struct {
	Slot          string
	ID            string
	NodeID        string
	NodeName      string
	TaskGroup     string
	JobVersion    uint64
	DesiredStatus string
	ClientStatus  string
}

// Live reports whether the allocation runs or is about to.
func (a SlotAlloc) Live() bool { return live(a.DesiredStatus, a.ClientStatus) }

// Allocations lists the allocations of both slot jobs of an application
// (blue first), terminal ones included.
func (n *Nomad) Allocations(ctx context.Context, app string) ([]SlotAlloc, error) {
	var out []SlotAlloc
	for _, slot := range []string{scheduler.SlotBlue, scheduler.SlotGreen} {
		stubs, _, err := n.nc.Jobs().Allocations(contract.SlotJobID(app, slot), true, n.query(ctx))
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("listing the allocations of %s: %w", contract.SlotJobID(app, slot), controlPlane(ctx, err))
		}
		for _, a := range stubs {
			out = append(out, SlotAlloc{
				Slot: slot, ID: a.ID, NodeID: a.NodeID, NodeName: a.NodeName, TaskGroup: a.TaskGroup,
				JobVersion: a.JobVersion, DesiredStatus: a.DesiredStatus, ClientStatus: a.ClientStatus,
			})
		}
	}
	return out, nil
}

func (n *Nomad) query(ctx context.Context) *api.QueryOptions {
	return (&api.QueryOptions{}).WithContext(ctx)
}

func (n *Nomad) write(ctx context.Context) *api.WriteOptions {
	return (&api.WriteOptions{}).WithContext(ctx)
}

// validSlotValue accepts "", a colour, or both colours separated by commas.
func validSlotValue(v string) error {
	if v == "" {
		return nil
	}
	for s := range strings.SplitSeq(v, ",") {
		if s != scheduler.SlotBlue && s != scheduler.SlotGreen {
			return fmt.Errorf("slot value %q: %q is neither %q nor %q", v, s, scheduler.SlotBlue, scheduler.SlotGreen)
		}
	}
	return nil
}

// slotsLeaving lists the colours `from` names and `to` does not: the slots
// whose allocations a switch stops.
func slotsLeaving(from, to string) []string {
	var out []string
	if from == "" {
		return nil
	}
	keep := strings.Split(to, ",")
	for s := range strings.SplitSeq(from, ",") {
		if !slices.Contains(keep, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func slotName(v string) string {
	if v == "" {
		return `"" (none)`
	}
	return v
}

func deviceName(dev scheduler.DeviceRef) string {
	name := dev.Name
	if name == "" {
		name = "device"
	}
	return fmt.Sprintf("%s (node %s)", name, shortID(dev.ID))
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// fence keeps the candidate job off devices whose stale slot metadata names
// its colour but that could not be reconciled before it was registered
// (scheduler invariant I1): one `${node.unique.id} != <id>` constraint each.
func fence(job *api.Job, devices []scheduler.DeviceRef) {
	for _, d := range devices {
		job.Constraints = append(job.Constraints, &api.Constraint{LTarget: "${node.unique.id}", Operand: "!=", RTarget: d.ID})
	}
}

// RetireCandidate stops the candidate slot job of a rolled-back run (it is
// kept, not purged, so its history stays readable): the rejected release
// then runs nowhere, not even on a device that returns with metadata still
// naming it. The active slot's job is never read or written.
func (n *Nomad) RetireCandidate(ctx context.Context, r *scheduler.Rollout) error {
	if r.Candidate == "" || r.Candidate == r.Active {
		return fmt.Errorf("retiring the candidate of %s: the run names no candidate slot apart from the active one", r.App)
	}
	id := contract.SlotJobID(r.App, r.Candidate)
	if err := n.fenced(); err != nil {
		return fmt.Errorf("stopping the rejected candidate slot job %s: not done: %w", id, err)
	}
	_, _, err := n.nc.Jobs().Deregister(id, false, n.write(ctx))
	switch {
	case isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("stopping the rejected candidate slot job %s: %w", id, controlPlane(ctx, err))
	}
	n.logger.Info("stopped the rejected candidate slot job", "job", id, "rollout", r.ID)
	return nil
}
