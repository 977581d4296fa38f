package main

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/allocdir"
	"github.com/hashicorp/nomad/client/allocrunner/interfaces"
	"github.com/hashicorp/nomad/client/allocrunner/state"
	"github.com/hashicorp/nomad/client/config"
	cinterfaces "github.com/hashicorp/nomad/client/interfaces"
	"github.com/hashicorp/nomad/client/pluginmanager/drivermanager"
	cstructs "github.com/hashicorp/nomad/client/structs"
	"github.com/hashicorp/nomad/nomad/structs"
	nomaddevice "github.com/hashicorp/nomad/plugins/device"
	"github.com/hashicorp/nomad/plugins/drivers"
)

// simAllocRunner stands in for Nomad's allocation runner: it runs no task.
// An allocation is reported running at once (its tasks "started"), its
// Consul services are registered in the catalog on the device's node (what
// Nomad's Consul integration would do through the device's own Consul
// agent), and it completes when the server stops it, deregistering them.
type simAllocRunner struct {
	dev     *device
	updater cinterfaces.AllocStateHandler
	logger  hclog.Logger

	mu         sync.Mutex
	alloc      *structs.Allocation
	st         *state.State
	done       bool // terminal: waitCh closed
	destroyed  bool
	waitCh     chan struct{}
	destroyCh  chan struct{}
	shutdownCh chan struct{}
	shutOnce   sync.Once
}

// allocRunnerFactory returns the client's AllocRunnerFactory for the device.
func (d *device) allocRunnerFactory() config.AllocRunnerFactory {
	return func(conf *config.AllocRunnerConfig) (interfaces.AllocRunner, error) {
		return &simAllocRunner{
			dev:        d,
			updater:    conf.StateUpdater,
			logger:     d.logger.With("alloc_id", conf.Alloc.ID),
			alloc:      conf.Alloc,
			st:         &state.State{},
			waitCh:     make(chan struct{}),
			destroyCh:  make(chan struct{}),
			shutdownCh: make(chan struct{}),
		}, nil
	}
}

func (ar *simAllocRunner) taskNamesLocked() []string {
	tg := ar.alloc.Job.LookupTaskGroup(ar.alloc.TaskGroup)
	if tg == nil {
		return nil
	}
	names := make([]string, 0, len(tg.Tasks))
	for _, t := range tg.Tasks {
		names = append(names, t.Name)
	}
	return names
}

// setTasksLocked moves every task to the state and records the event.
func (ar *simAllocRunner) setTasksLocked(taskState, event string, now time.Time) {
	if ar.st.TaskStates == nil {
		ar.st.TaskStates = map[string]*structs.TaskState{}
	}
	for _, name := range ar.taskNamesLocked() {
		ts := ar.st.TaskStates[name]
		if ts == nil {
			ts = structs.NewTaskState()
			ar.st.TaskStates[name] = ts
		}
		ts.State = taskState
		switch taskState {
		case structs.TaskStateRunning:
			ts.StartedAt = now
		case structs.TaskStateDead:
			ts.FinishedAt = now
		}
		ev := structs.NewTaskEvent(event).SetMessage("simulated by nodesim")
		ev.PopulateEventDisplayMessage()
		ts.Events = append(ts.Events, ev)
	}
}

// sendLocked pushes the allocation's client state to the client, which
// batches it to the servers.
func (ar *simAllocRunner) sendLocked() *structs.Allocation {
	a := ar.alloc.Copy()
	a.ClientStatus = ar.st.ClientStatus
	a.ClientDescription = ar.st.ClientDescription
	a.TaskStates = ar.st.TaskStates
	a.DeploymentStatus = ar.st.DeploymentStatus
	ar.alloc.ClientStatus = a.ClientStatus
	ar.alloc.TaskStates = a.TaskStates
	return a
}

// Run starts the allocation: running at once, then its services.
func (ar *simAllocRunner) Run() {
	ar.mu.Lock()
	if ar.done || ar.alloc.ServerTerminalStatus() {
		ar.mu.Unlock()
		ar.finish("stopped before it started")
		return
	}
	now := time.Now()
	ar.setTasksLocked(structs.TaskStateRunning, structs.TaskStarted, now)
	ar.st.ClientStatus = structs.AllocClientStatusRunning
	ar.st.ClientDescription = "Tasks are running"
	ar.st.SetDeploymentStatus(now, true)
	a := ar.sendLocked()
	alloc := ar.alloc.Copy()
	ar.mu.Unlock()
	ar.updater.AllocStateUpdated(a)
	ar.dev.sim.services.register(ar.dev, alloc)
}

// finish completes the allocation (its tasks exited on request) and
// deregisters its services.
func (ar *simAllocRunner) finish(why string) {
	ar.mu.Lock()
	if ar.done {
		ar.mu.Unlock()
		return
	}
	ar.done = true
	ar.setTasksLocked(structs.TaskStateDead, structs.TaskKilled, time.Now())
	ar.st.ClientStatus = structs.AllocClientStatusComplete
	ar.st.ClientDescription = "All tasks have completed (" + why + ")"
	a := ar.sendLocked()
	id := ar.alloc.ID
	close(ar.waitCh)
	ar.mu.Unlock()
	ar.dev.sim.services.deregister(ar.dev, id)
	ar.updater.AllocStateUpdated(a)
}

func (ar *simAllocRunner) Alloc() *structs.Allocation {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return ar.alloc.Copy()
}

func (ar *simAllocRunner) Restore() error { return nil }

// Update takes the server's new version of the allocation: a stop or an
// eviction completes it; an in-place update re-registers its services.
func (ar *simAllocRunner) Update(update *structs.Allocation) {
	ar.mu.Lock()
	ar.alloc = update.Copy()
	ar.alloc.ClientStatus = ar.st.ClientStatus
	ar.alloc.TaskStates = ar.st.TaskStates
	done := ar.done
	ar.mu.Unlock()
	if done {
		return
	}
	if update.ServerTerminalStatus() {
		go ar.finish("stopped by the server")
		return
	}
	go ar.dev.sim.services.register(ar.dev, update.Copy())
}

func (ar *simAllocRunner) Reconnect(update *structs.Allocation) error {
	ar.Update(update)
	return nil
}

func (ar *simAllocRunner) Shutdown() {
	ar.shutOnce.Do(func() { close(ar.shutdownCh) })
}

func (ar *simAllocRunner) Destroy() {
	ar.finish("destroyed")
	ar.mu.Lock()
	defer ar.mu.Unlock()
	if !ar.destroyed {
		ar.destroyed = true
		close(ar.destroyCh)
	}
	ar.shutOnce.Do(func() { close(ar.shutdownCh) })
}

func (ar *simAllocRunner) IsDestroyed() bool {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return ar.destroyed
}
func (ar *simAllocRunner) IsMigrating() bool { return false }
func (ar *simAllocRunner) IsWaiting() bool   { return false }

func (ar *simAllocRunner) WaitCh() <-chan struct{}     { return ar.waitCh }
func (ar *simAllocRunner) DestroyCh() <-chan struct{}  { return ar.destroyCh }
func (ar *simAllocRunner) ShutdownCh() <-chan struct{} { return ar.shutdownCh }

func (ar *simAllocRunner) AllocState() *state.State {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	return ar.st.Copy()
}

func (ar *simAllocRunner) PersistState() error           { return nil }
func (ar *simAllocRunner) AcknowledgeState(*state.State) {}

// GetUpdatePriority: a client status change goes to the servers at once,
// like the real runner does.
func (ar *simAllocRunner) GetUpdatePriority(a *structs.Allocation) cstructs.AllocUpdatePriority {
	return cstructs.AllocUpdatePriorityUrgent
}

func (ar *simAllocRunner) SetClientStatus(status string) {
	ar.mu.Lock()
	defer ar.mu.Unlock()
	ar.st.ClientStatus = status
	ar.alloc.ClientStatus = status
}

func (ar *simAllocRunner) Signal(taskName, signal string) error { return nil }
func (ar *simAllocRunner) RestartTask(taskName string, taskEvent *structs.TaskEvent) error {
	return nil
}
func (ar *simAllocRunner) RestartRunning(taskEvent *structs.TaskEvent) error { return nil }
func (ar *simAllocRunner) RestartAll(taskEvent *structs.TaskEvent) error     { return nil }

func (ar *simAllocRunner) GetTaskEventHandler(taskName string) drivermanager.EventHandler {
	return nil
}
func (ar *simAllocRunner) GetTaskExecHandler(taskName string) drivermanager.TaskExecHandler {
	return nil
}
func (ar *simAllocRunner) GetTaskDriverCapabilities(taskName string) (*drivers.Capabilities, error) {
	return &drivers.Capabilities{}, nil
}

func (ar *simAllocRunner) StatsReporter() interfaces.AllocStatsReporter { return ar }
func (ar *simAllocRunner) Listener() *cstructs.AllocListener            { return nil }
func (ar *simAllocRunner) GetAllocDir() *allocdir.AllocDir              { return nil }

// LatestAllocStats reports zero usage: nothing runs.
func (ar *simAllocRunner) LatestAllocStats(taskFilter string) (*cstructs.AllocResourceUsage, error) {
	return &cstructs.AllocResourceUsage{
		ResourceUsage: &cstructs.ResourceUsage{
			MemoryStats: &cstructs.MemoryStats{},
			CpuStats:    &cstructs.CpuStats{},
			DeviceStats: []*nomaddevice.DeviceGroupStats{},
		},
		Tasks: map[string]*cstructs.TaskResourceUsage{},
	}, nil
}
