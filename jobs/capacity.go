package jobs

import (
	"context"
	"fmt"
	"slices"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

var _ scheduler.CapacitySource = (*Nomad)(nil)

// SlotCapacity is one slot allocation's demand per device class (the
// jobspec's task resources) and each device's room for the application's
// slots: Nomad's node resources minus the node's reserved resources minus
// what live allocations of other jobs use.
func (n *Nomad) SlotCapacity(ctx context.Context, devices []scheduler.DeviceRef) (*scheduler.Capacity, error) {
	demand := jobDemand(n.base)
	out := &scheduler.Capacity{PerClass: map[string]scheduler.Resources{}, Room: map[string]scheduler.Resources{}}
	own := []string{contract.SlotJobID(n.policy.Name, scheduler.SlotBlue), contract.SlotJobID(n.policy.Name, scheduler.SlotGreen)}
	for _, d := range devices {
		out.PerClass[d.Class] = demand
		if d.ID == "" {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, n.CallTimeout)
		node, _, err := n.nc.Nodes().Info(d.ID, n.query(cctx))
		if err != nil {
			cancel()
			return nil, controlPlane(ctx, fmt.Errorf("reading the resources of node %s: %w", deviceName(d), err))
		}
		allocs, _, err := n.nc.Nodes().Allocations(d.ID, n.query(cctx))
		cancel()
		if err != nil {
			return nil, controlPlane(ctx, fmt.Errorf("listing the allocations of node %s: %w", deviceName(d), err))
		}
		var room scheduler.Resources
		if node.NodeResources != nil {
			room.CPUMHz = int(node.NodeResources.Cpu.CpuShares)
			room.MemoryMB = int(node.NodeResources.Memory.MemoryMB)
		}
		if rr := node.ReservedResources; rr != nil {
			room.CPUMHz -= int(rr.Cpu.CpuShares)
			room.MemoryMB -= int(rr.Memory.MemoryMB)
		}
		for _, a := range allocs {
			if a.AllocatedResources == nil || !live(a.DesiredStatus, a.ClientStatus) || slices.Contains(own, a.JobID) {
				continue
			}
			for _, tr := range a.AllocatedResources.Tasks {
				if tr == nil {
					continue
				}
				room.CPUMHz -= int(tr.Cpu.CpuShares)
				room.MemoryMB -= int(tr.Memory.MemoryMB)
			}
		}
		out.Room[d.ID] = room
	}
	return out, nil
}

// jobDemand sums the tasks' resources of every group of a parsed job
// (Nomad's defaults where the jobspec sets none: 100 MHz, 300 MB).
func jobDemand(job *api.Job) scheduler.Resources {
	var r scheduler.Resources
	if job == nil {
		return r
	}
	for _, g := range job.TaskGroups {
		count := 1
		if g.Count != nil && *g.Count > 1 {
			count = *g.Count
		}
		for _, t := range g.Tasks {
			cpu, mem := 100, 300
			if t.Resources != nil {
				if t.Resources.CPU != nil {
					cpu = *t.Resources.CPU
				}
				if t.Resources.MemoryMB != nil {
					mem = *t.Resources.MemoryMB
				}
			}
			r.CPUMHz += cpu * count
			r.MemoryMB += mem * count
		}
	}
	return r
}
