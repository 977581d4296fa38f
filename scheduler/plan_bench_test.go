package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
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
