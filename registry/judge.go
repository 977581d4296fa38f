package registry

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/fleetplan/fleetplan/scheduler"
)

// judgeDevice decides a device's status from the two sides; see Diff.
func judgeDevice(name string, nn *scheduler.NomadNode, cn *scheduler.ConsulNode, nomadDevice bool) (scheduler.RegistryStatus, string) {
	switch {
	case nn != nil && cn != nil:
		var why []string
		if nn.Status != scheduler.NomadStatusReady {
			why = append(why, "Nomad node status "+orUnknown(nn.Status))
		}
		if !serfAlive(cn.SerfStatus) {
			why = append(why, "Consul serfHealth "+orUnknown(cn.SerfStatus))
		}
		if len(why) == 0 {
			return scheduler.StatusOK, ""
		}
		return scheduler.StatusOffline, strings.Join(why, "; ")
	case nn != nil:
		if nn.Status != scheduler.NomadStatusReady {
			return scheduler.StatusOffline, "Nomad node status " + orUnknown(nn.Status) + "; Consul has no node named " + strconv.Quote(name)
		}
		return scheduler.StatusDiscrepancy, "Nomad node is ready but Consul has no node named " + strconv.Quote(name)
	case cn != nil:
		if nomadDevice && !serfAlive(cn.SerfStatus) {
			return scheduler.StatusOffline, "Nomad no longer lists the node; Consul serfHealth " + orUnknown(cn.SerfStatus)
		}
		return scheduler.StatusDiscrepancy, "Consul node (serfHealth " + orUnknown(cn.SerfStatus) + ") has no Nomad node named " + strconv.Quote(name)
	default:
		return scheduler.StatusOffline, "neither Nomad nor Consul lists the node"
	}
}

func serfAlive(s string) bool { return s == scheduler.SerfPassing || s == scheduler.SerfWarning }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// capabilityChanges describes how the node class and capabilities of a
// device changed, or returns "".
func capabilityChanges(prev, next scheduler.Device) string {
	var ch []string
	add := func(field, a, b string) {
		if a != b {
			ch = append(ch, fmt.Sprintf("%s %q -> %q", field, a, b))
		}
	}
	add("class", prev.Class, next.Class)
	pc, nc := prev.Capabilities, next.Capabilities
	add("arch", pc.Arch, nc.Arch)
	add("os", pc.OS, nc.OS)
	add("kernel", pc.Kernel, nc.Kernel)
	if pc.MemoryMB != nc.MemoryMB {
		ch = append(ch, fmt.Sprintf("memory_mb %d -> %d", pc.MemoryMB, nc.MemoryMB))
	}
	add("accelerator", pc.Accelerator, nc.Accelerator)
	add("model", pc.Model, nc.Model)
	return strings.Join(ch, ", ")
}

func className(c string) string {
	if c == "" {
		return "(none)"
	}
	return c
}
