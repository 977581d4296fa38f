package simfleet

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

// benchSizes are the fleet sizes of BenchmarkControllerRun:
// SIMFLEET_SIZES (comma-separated) or 1,000 and 10,000; a 100,000-device
// run takes long for a benchmark iteration: ask for it, with -benchtime 1x.
func benchSizes(b *testing.B) []int {
	v := os.Getenv("SIMFLEET_SIZES")
	if v == "" {
		return []int{1_000, 10_000}
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("SIMFLEET_SIZES=%q: %q is not a number of devices", v, f)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkControllerRun is a full controller run (canary, auto-approve,
// four waves, CONFIRM) of a simulated fleet of 3 classes with 0.5% of the
// devices offline and 0.5% failing the release (quarantined), and a run
// that a failing wave rolls back (20% of the devices switched after the
// first 30% of the fleet fail). Besides time and allocations it reports the
// peak heap in use (fakes included), the heap in use before the controller
// started (the fleet and its stand-ins), the store's writes and the
// simulated time covered.
func BenchmarkControllerRun(b *testing.B) {
	for _, n := range benchSizes(b) {
		for _, sc := range []struct {
			name string
			cfg  Config
			want scheduler.Outcome
		}{
			{"rollout", Config{Devices: n, Offline: 0.005, Fail: 0.005, Seed: 1}, scheduler.OutcomeSucceeded},
			{"rollback", Config{Devices: n, Offline: 0.005, Fail: 0.2, FailAfter: 0.3, Seed: 2}, scheduler.OutcomeRolledBack},
		} {
			b.Run(fmt.Sprintf("devices=%d/%s", n, sc.name), func(b *testing.B) {
				b.ReportAllocs()
				var last *Result
				for b.Loop() {
					res, err := Run(context.Background(), sc.cfg)
					if err != nil {
						b.Fatalf("run: %v", err)
					}
					if res.Rollout.Outcome != sc.want {
						b.Fatalf("outcome %q, want %q: %s", res.Rollout.Outcome, sc.want, res.Rollout.LastAction)
					}
					last = res
				}
				b.ReportMetric(float64(last.PeakHeap)/(1<<20), "peak-heap-MB")
				b.ReportMetric(float64(last.HeapBefore)/(1<<20), "start-heap-MB")
				b.ReportMetric(float64(last.Store.DeviceWrites+last.Store.RolloutWrites), "store-writes")
				b.ReportMetric(float64(last.Store.DeviceTxns+last.Store.RolloutWrites), "store-requests")
				b.ReportMetric(last.Simulated.Seconds(), "sim-s")
				if last.VmHWM > 0 {
					b.ReportMetric(float64(last.VmHWM)/(1<<20), "VmHWM-MB")
				}
			})
		}
	}
}
