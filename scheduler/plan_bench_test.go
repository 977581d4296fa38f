package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
)

var benchClasses = []string{"jetson", "rpi", "gateway"}

// benchFleet is n devices over 3 classes with UUID-like IDs; 2% offline,
// 0.5% quarantined, 0.5% with a discrepancy.
func benchFleet(n int) []Device {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	out := make([]Device, n)
	for i := range out {
		class := benchClasses[i%len(benchClasses)]
		d := Device{
			ID:     fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff),
			Name:   class + "-" + strconv.Itoa(i),
			Class:  class,
			Status: StatusOK,
		}
		switch x := r.IntN(1000); {
		case x < 20:
			d.Status = StatusOffline
		case x < 25:
			d.Status, d.Reason = StatusQuarantined, "failed rollout"
		case x < 30:
			d.Status, d.Reason = StatusDiscrepancy, "no Consul node"
		}
		out[i] = d
	}
	return out
}

func BenchmarkPlanRollout(b *testing.B) {
	p := testPolicy("edgeinfer", 2, 1, 10, 25, 50, 100)
	for _, size := range []struct {
		name string
		n    int
	}{{"1k", 1_000}, {"10k", 10_000}, {"100k", 100_000}} {
		devices := benchFleet(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := PlanRollout(p, devices); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDiffRegistry is one sync scan of a 100k registry where 1% of the
// devices went down, 0.1% changed capabilities, 0.1% lost their Consul agent
// and 100 devices are new.
func BenchmarkDiffRegistry(b *testing.B) {
	const n = 100_000
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	current := make(map[string]Device, n)
	obs := Observed{Nomad: make(map[string]NomadNode, n+100), Consul: make(map[string]ConsulNode, n+100)}
	r := rand.New(rand.NewPCG(3, 3))
	caps := Capabilities{Arch: "arm64", OS: "linux", Kernel: "5.15", MemoryMB: 8192, Accelerator: "cuda", Model: "orin-nano"}
	meta := map[string]string{"fleet": "vision"}
	apps := map[string]AppSlot{"edgeinfer": {Slot: "blue", Version: "1.0"}}
	for i := range n + 100 {
		class := benchClasses[i%len(benchClasses)]
		name := class + "-" + strconv.Itoa(i)
		id := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
		nn := NomadNode{ID: id, Name: name, Class: class, Datacenter: "dc1", Status: "ready", Eligibility: "eligible",
			Address: "10.0.0.1", Capabilities: caps, Meta: meta, Apps: apps}
		cn := ConsulNode{Name: name, Address: "10.0.0.1", SerfStatus: "passing"}
		if i < n {
			current[id] = Device{ID: id, Name: name, Class: class, Datacenter: "dc1", NomadStatus: "ready", Eligibility: "eligible",
				ConsulStatus: "passing", Address: "10.0.0.1", Capabilities: caps, Meta: meta, Apps: apps,
				LastHeartbeat: now.Add(-time.Minute), Status: StatusOK}
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
		for b.Loop() {
			next, _ := DiffRegistry(current, obs, now)
			if len(next) != n+100 {
				b.Fatalf("next has %d devices", len(next))
			}
		}
	})
}
