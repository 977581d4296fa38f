package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"syscall"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/scheduler"
)

// benchFleet is a watcher whose caches hold n devices running the
// candidate (app-green) with three checks each (serfHealth, the agent's
// layer 2 node check, the application's layer 3 service check), the
// checks answer that filled them, and the gate's inputs.
type benchFleet struct {
	w       *Watcher
	jw      *jobWatch
	checks  []checkInfo
	nodes   []nodeInfo
	allocs  []allocInfo
	index   uint64
	devices []scheduler.DeviceRef
	recs    []*scheduler.DeviceRecord
	run     *scheduler.Rollout // the run holding recs, all in stage 0
	policy  *scheduler.Policy
	now     time.Time
}

const benchL3 = `HTTP GET http://127.0.0.1:20394/health: 200 OK Output: {"status":"healthy","version":"2.0.0","uptime_s":73}`

func newBenchFleet(b testing.TB, n int) *benchFleet {
	b.Helper()
	w := newWatcher(newFakeSource(), nil, blocking.Clock{})
	f := &benchFleet{w: w, index: 1000, now: time.Unix(1_700_000_000, 0)}
	f.policy = &scheduler.Policy{Name: "app", Release: scheduler.Release{Version: "2.0.0"},
		Health: scheduler.Health{Grace: 10 * time.Second, Application: scheduler.Application{ExpectVersion: true, MaxRestarts: 2}}}
	nodes := make([]nodeInfo, 0, n)
	allocs := make([]allocInfo, 0, n)
	tags := []string{contract.SlotTag("green")}
	for i := range n {
		id, name := fmt.Sprintf("node-%06d", i), fmt.Sprintf("dev-%06d", i)
		alloc := fmt.Sprintf("alloc-%06d", i)
		nodes = append(nodes, nodeInfo{ID: id, Name: name, Status: "ready"})
		allocs = append(allocs, allocInfo{ID: alloc, JobID: "app-green", NodeID: id, ClientStatus: "running", DesiredStatus: "run", JobVersion: 1, CreateIndex: 50})
		f.checks = append(f.checks,
			checkInfo{Node: name, CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", ModifyIndex: 10},
			checkInfo{Node: name, CheckID: "fleetplan-l2", Name: "fleetplan L2 system", Status: "passing", Output: "cpu 12% < 90%", ModifyIndex: 10},
			checkInfo{Node: name, CheckID: "_nomad-check-" + alloc, Name: "fleetplan L3 application", Status: "passing", Output: benchL3,
				ServiceID: "_nomad-task-" + alloc + "-app-app-http", ServiceName: "app", ServiceTags: tags, ModifyIndex: 10})
		f.devices = append(f.devices, scheduler.DeviceRef{ID: id, Name: name})
		f.recs = append(f.recs, &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: id, Name: name}, State: scheduler.DeviceVerifying, SwitchedAt: f.now.Add(-time.Minute)})
	}
	f.run = &scheduler.Rollout{App: "app", Candidate: "green", Devices: make(map[string]*scheduler.DeviceRecord, n)}
	for _, rec := range f.recs {
		f.run.Devices[rec.ID] = rec
	}
	w.mu.Lock()
	jw := &jobWatch{id: "app-green", slot: "green", allocs: map[string][]allocInfo{}, cache: map[string]*cachedHealth{}}
	w.jobs[jw.id] = jw
	f.jw = jw
	f.nodes, f.allocs = nodes, allocs
	w.publishNodesLocked(slices.Clone(nodes))
	view := jobView{Found: true, Latest: 1, Versions: map[uint64]string{1: "2.0.0+b1"}, Services: []string{"app"}}
	w.publishAllocsLocked([]string{jw.id}, allocsAnswer{allocs: slices.Clone(allocs), views: map[string]jobRead{jw.id: {view: view, maxAlloc: 50}}})
	w.mu.Unlock()
	// The new services restarted the checks loop on the fake: stop it,
	// the benchmark feeds the answers itself.
	w.Stop()
	w.mu.Lock()
	w.cs.reset()
	w.cs.merge(f.checks, f.index)
	w.mu.Unlock()
	return f
}

// cpuTime is the process' CPU time so far (user and system, every
// thread: the garbage collector's work included).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU adds the CPU time per operation since start ("cpu-ns/op"):
// on a machine shared with other work the wall time per operation
// (ns/op) includes the time the benchmark waited for a core; this does
// not.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// waveVerdict is the gate on every device of the wave, as the
// controller's gate takes it: the stage's devices (in order), the verdict
// of each, the stage's tally. It returns how many pass.
func (f *benchFleet) waveVerdict(b *testing.B, hs map[string]scheduler.DeviceHealth) int {
	gate := scheduler.DefaultGate{}
	pass := 0
	recs := f.run.StageDevices(0)
	for _, rec := range recs {
		if gate.Evaluate(f.policy, rec, hs[rec.ID], f.now).Status == scheduler.VerdictPass {
			pass++
		}
	}
	if t := scheduler.TallyDevices(recs); t.Total != len(f.recs) || t.Verifying != len(f.recs) {
		b.Fatalf("tally %+v of %d devices", t, len(f.recs))
	}
	return pass
}

// BenchmarkSnapshotVerdict: a checks answer for the whole fleet (100,000
// devices, three checks each) arrives and the wave's verdict is taken on
// every device. "cold": the first answer: the checks cache is filled and
// every device's health computed. "rebuild": an answer the incremental
// path cannot apply (one check left it: an instance deregistered; every
// other iteration it is back): the cache is rebuilt in place, the devices
// whose checks did not change keep their health. "steady": the next
// answer, in which a few checks changed: the answer is scanned, the
// changed devices recomputed, the others read from the cache. "wakeup":
// the nodes and allocations queries answer what they answered before
// (they woke for a change they do not show: a switch's node metadata,
// another job's allocation), then the same checks answer. health-cpu-ns/op
// is the watcher's part of cpu-ns/op.
func BenchmarkSnapshotVerdict(b *testing.B) {
	// The measure is a 100,000-check answer (33,334 devices of
	// three checks); the fleet of 100,000 devices answers 300,000.
	for _, size := range []struct {
		name string
		n    int
	}{{"100k-checks", 33_334}, {"100k-devices", 100_000}} {
		for _, mode := range []string{"cold", "rebuild", "steady", "wakeup"} {
			b.Run(size.name+"/"+mode, func(b *testing.B) { benchSnapshot(b, size.n, mode) })
		}
	}
}

func benchSnapshot(b *testing.B, n int, mode string) {
	f := newBenchFleet(b, n)
	f.w.mu.Lock()
	f.w.healthLocked(f.jw, f.devices) // warm
	f.w.mu.Unlock()
	answer := f.checks
	// The rebuild's answer without one device's serfHealth check.
	d := 3 * (n / 2)
	without := append(append(make([]checkInfo, 0, len(f.checks)), f.checks[:d]...), f.checks[d+1:]...)
	b.ResetTimer()
	cpu0 := cpuTime()
	var health time.Duration // CPU of merge and healthLocked
	for i := range b.N {
		f.index++
		f.w.mu.Lock()
		switch mode {
		case "cold":
			f.w.cs = newCheckCache()
			clear(f.jw.cache)
			f.jw.views = nil
		case "wakeup":
			f.w.publishNodesLocked(slices.Clone(f.nodes))
			f.w.publishAllocsLocked([]string{f.jw.id}, allocsAnswer{allocs: slices.Clone(f.allocs)})
		case "rebuild":
			// A device's serfHealth check leaves the answer (every
			// other iteration: it is back).
			answer = f.checks
			if i%2 == 0 {
				answer = without
			}
		default:
			// Ten devices' application checks changed output.
			for j := range 10 {
				c := &f.checks[3*((i*10+j)*7919%n)+2]
				c.Output = benchL3 + " "
				c.ModifyIndex = f.index
			}
		}
		h0 := cpuTime()
		f.w.cs.merge(answer, f.index)
		hs := f.w.healthLocked(f.jw, f.devices)
		health += cpuTime() - h0
		f.w.mu.Unlock()
		want := n
		if len(answer) < len(f.checks) {
			want-- // the device without serfHealth is offline
		}
		if pass := f.waveVerdict(b, hs); pass != want {
			b.Fatalf("%d of %d devices pass, want %d", pass, n, want)
		}
	}
	reportCPU(b, cpu0)
	// The watcher's part (the answer merged, the devices' health
	// answered); the rest is the gate's (the stage's devices in order,
	// a lookup in the answer and a verdict per device, the tally).
	b.ReportMetric(float64(health)/float64(b.N), "health-cpu-ns/op")
}

// BenchmarkOneCheckChange: one check of the fleet changes status; the
// changed device's verdict is taken again. "delta" applies the change to
// the cache (the incremental path: one node touched, one device
// recomputed); "answer" is the same change arriving inside a full checks
// answer of the fleet (a scan of the answer's modify indexes, no rebuild).
func BenchmarkOneCheckChange(b *testing.B) {
	const n = 100_000
	for _, mode := range []string{"delta", "answer"} {
		b.Run(mode, func(b *testing.B) {
			f := newBenchFleet(b, n)
			f.w.mu.Lock()
			f.w.healthLocked(f.jw, f.devices) // warm
			f.w.mu.Unlock()
			gate := scheduler.DefaultGate{}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				d := (i * 7919) % n
				c := &f.checks[3*d+2]
				want := scheduler.VerdictPass
				if c.Status == "passing" {
					c.Status, want = "warning", scheduler.VerdictPass
				} else {
					c.Status = "passing"
				}
				f.index++
				c.ModifyIndex = f.index
				f.w.mu.Lock()
				if mode == "delta" {
					f.w.cs.put(*c)
					f.w.cs.index = f.index
				} else {
					f.w.cs.merge(f.checks, f.index)
				}
				h := f.w.healthLocked(f.jw, f.devices[d:d+1])[f.devices[d].ID]
				f.w.mu.Unlock()
				if len(h.Checks) != 3 || h.Checks[2].Status != c.Status {
					b.Fatalf("device %d: %+v", d, h)
				}
				if h.Checks[2].Status != c.Status {
					b.Fatalf("device %d: check status %s, want %s", d, h.Checks[2].Status, c.Status)
				}
				if v := gate.Evaluate(f.policy, f.recs[d], h, f.now); v.Status != want {
					b.Fatalf("device %d: verdict %+v", d, v)
				}
			}
			reportCPU(b, cpu0)
		})
	}
}

// BenchmarkChecksAnswer: the checks query's answer for 100,000 devices
// (300,000 checks, serialized as Consul serializes them, ~170 MB) read and
// decoded by the watcher's source from a local HTTP server. Every answer
// of the checks query costs this, however few checks changed.
func BenchmarkChecksAnswer(b *testing.B) {
	const n = 100_000
	hcs := make([]*consulapi.HealthCheck, 0, 3*n)
	for i := range n {
		name, alloc := fmt.Sprintf("dev-%06d", i), fmt.Sprintf("alloc-%06d", i)
		hcs = append(hcs,
			&consulapi.HealthCheck{Node: name, CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", Output: "Agent alive and reachable", CreateIndex: 10, ModifyIndex: 10},
			&consulapi.HealthCheck{Node: name, CheckID: "fleetplan-l2", Name: "fleetplan L2 system", Status: "passing", Output: "cpu 12% < 90%", Type: "ttl", CreateIndex: 10, ModifyIndex: 10},
			&consulapi.HealthCheck{Node: name, CheckID: "_nomad-check-" + alloc, Name: "fleetplan L3 application", Status: "passing", Output: benchL3, Type: "http",
				ServiceID: "_nomad-task-" + alloc + "-app-app-http", ServiceName: "app", ServiceTags: []string{"fleetplan-slot=green"}, CreateIndex: 10, ModifyIndex: 10,
				Definition: consulapi.HealthCheckDefinition{HTTP: "http://127.0.0.1:20394/health", Method: "GET", IntervalDuration: 2 * time.Second, TimeoutDuration: time.Second}})
	}
	body, err := json.Marshal(hcs)
	if err != nil {
		b.Fatal(err)
	}
	hcs = nil
	src, _ := newHTTPSource(b, map[string]func(http.ResponseWriter, *http.Request){
		"/v1/health/state/any": serveJSON("1000", string(body)),
	})
	b.SetBytes(int64(len(body)))
	ctx := context.Background()
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		cs, idx, err := src.Checks(ctx, "F", query{})
		if err != nil || idx != 1000 || len(cs) != 3*n || cs[3*n-1].ServiceTags[0] != "fleetplan-slot=green" {
			b.Fatalf("%d checks at %d: %v", len(cs), idx, err)
		}
	}
	reportCPU(b, cpu0)
}
