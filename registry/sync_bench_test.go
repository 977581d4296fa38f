package registry

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// BenchmarkSyncLocal measures the non-network part of a sync on a healthy
// fleet: decoding the registry as Consul's List returns it, the diff, and
// deciding what to write (nothing but one device that went down). With the
// decode cache, entries whose modify index did not move since the previous
// sync are not decoded again (what Sync does from its second sync on: the
// cache is primed by a first sync before the timer starts).
func BenchmarkSyncLocal(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		for _, cached := range []bool{false, true} {
			b.Run(fmt.Sprintf("devices=%d/decode-cache=%v", n, cached), func(b *testing.B) {
				r := &Registry{hbResolution: 5 * time.Minute}
				pairs := make(consulapi.KVPairs, 0, n)
				devs := make([]scheduler.Device, 0, n)
				for i := 0; i < n; i++ {
					d := sampleDevice(i)
					d.Meta = map[string]string{"fleet": "vision", "hw.model": "rpi-5", "hw.accelerator": "none", "hw.mem_mb": "4096", "fleetplan.app.slot": "blue"}
					v, _ := json.Marshal(d)
					pairs = append(pairs, &consulapi.KVPair{Key: "fleetplan/registry/" + d.ID, Value: v, ModifyIndex: uint64(i + 1)})
					devs = append(devs, d)
				}
				devs[n/2].NomadStatus = "down"
				obs := observe(devs...)
				var prev snapshot
				if cached {
					// The steady state: the previous sync decoded every
					// entry, and none moved since.
					s, err := decodeSnapshotCached("fleetplan/registry/", pairs, snapshot{})
					if err != nil {
						b.Fatal(err)
					}
					p := r.planSync(s, obs, testNow)
					s.forgetUncommitted(p.ops, nil) // as Sync does: here nothing is written
					prev = s
				}
				b.ReportAllocs()
				b.ResetTimer()
				start := cpuTime()
				for range b.N {
					s, err := decodeSnapshotCached("fleetplan/registry/", pairs, prev)
					if err != nil {
						b.Fatal(err)
					}
					p := r.planSync(s, obs, testNow)
					if len(p.ops) != 1 {
						b.Fatalf("%d writes, want 1", len(p.ops))
					}
					if cached {
						s.forgetUncommitted(p.ops, nil)
						prev = s
					}
				}
				reportCPU(b, start)
			})
		}
	}
}
