package registry

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

var diffBenchClasses = []string{"jetson", "rpi", "gateway"}

// BenchmarkDiff is one sync scan of a 100k registry where 1% of the
// devices went down, 0.1% changed capabilities, 0.1% lost their Consul agent
// and 100 devices are new. Besides the wall time it reports the CPU time
// of the diff calls (cpu-ms/op, both goroutines of the scan and the
// collector).
func BenchmarkDiff(b *testing.B) {
	const n = 100_000
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	current := make(map[string]scheduler.Device, n)
	obs := scheduler.Observed{Nomad: make(map[string]scheduler.NomadNode, n+100), Consul: make(map[string]scheduler.ConsulNode, n+100)}
	r := rand.New(rand.NewPCG(3, 3))
	caps := scheduler.Capabilities{Arch: "arm64", OS: "linux", Kernel: "5.15", MemoryMB: 8192, Accelerator: "cuda", Model: "orin-nano"}
	meta := map[string]string{"fleet": "vision"}
	apps := map[string]scheduler.AppSlot{"edgeinfer": {Slot: "blue", Version: "1.0"}}
	for i := range n + 100 {
		class := diffBenchClasses[i%len(diffBenchClasses)]
		name := class + "-" + strconv.Itoa(i)
		id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
		nn := scheduler.NomadNode{ID: id, Name: name, Class: class, Datacenter: "dc1", Status: "ready", Eligibility: "eligible",
			Address: "10.0.0.1", Capabilities: caps, Meta: meta, Apps: apps}
		cn := scheduler.ConsulNode{Name: name, Address: "10.0.0.1", SerfStatus: "passing"}
		if i < n {
			current[id] = scheduler.Device{ID: id, Name: name, Class: class, Datacenter: "dc1", NomadStatus: "ready", Eligibility: "eligible",
				ConsulStatus: "passing", Address: "10.0.0.1", Capabilities: caps, Meta: meta, Apps: apps,
				LastHeartbeat: now.Add(-time.Minute), Status: scheduler.StatusOK}
		}
		switch x := r.IntN(1000); {
		case x < 10:
			nn.Status, cn.SerfStatus = "down", "critical"
		case x < 11:
			nn.Capabilities.Kernel = "6.1"
		case x < 12:
			obs.Nomad[name] = nn
			continue // no Consul agent
		}
		obs.Nomad[name] = nn
		obs.Consul[name] = cn
	}
	b.Run("100k", func(b *testing.B) {
		b.ReportAllocs()
		// Diff updates the registry in place: each iteration starts from
		// the scenario again (not timed).
		work := maps.Clone(current)
		var cpu time.Duration
		for b.Loop() {
			start := cpuTime()
			next, _ := Diff(work, obs, now)
			cpu += cpuTime() - start
			if len(next) != n+100 {
				b.Fatalf("next has %d devices", len(next))
			}
			b.StopTimer()
			for k := range work {
				if _, ok := current[k]; !ok {
					delete(work, k)
				}
			}
			maps.Copy(work, current)
			b.StartTimer()
		}
		if cpu > 0 {
			b.ReportMetric(float64(cpu)/float64(b.N)/float64(time.Millisecond), "cpu-ms/op")
		}
	})
}

// reportCPU reports the process's CPU time per iteration since start
// (cpu-ms/op): on a shared machine, a steadier figure than the wall time.
func reportCPU(b *testing.B, start time.Duration) {
	if end := cpuTime(); start > 0 && end > start {
		b.ReportMetric(float64(end-start)/float64(b.N)/float64(time.Millisecond), "cpu-ms/op")
	}
}
