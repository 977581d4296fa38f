package scheduler

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPolicy is a canary-rolling policy with the given canary percentage and
// cumulative wave percentages.
func testPolicy(name string, canary float64, minPerClass int, waves ...float64) *Policy {
	p := &Policy{
		Name:     name,
		Strategy: StrategyCanaryRolling,
		Canary:   Canary{Percent: canary, MinPerClass: minPerClass, Soak: 10 * time.Minute, Approval: ApprovalManual},
	}
	for _, w := range waves {
		p.Waves = append(p.Waves, Wave{Percent: w, Soak: 5 * time.Minute})
	}
	return p
}

// testFleet makes count devices per class, all ok, named <class>-<n>.
func testFleet(count map[string]int) []Device {
	var out []Device
	classes := make([]string, 0, len(count))
	for c := range count {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for _, c := range classes {
		for i := range count[c] {
			name := fmt.Sprintf("%s-%03d", c, i)
			out = append(out, Device{ID: "id-" + name, Name: name, Class: c, Status: StatusOK})
		}
	}
	return out
}

// stageOf maps every planned device ID to the index of its stage.
func stageOf(t *testing.T, p *Plan) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i, s := range p.Stages {
		for _, d := range s.Devices {
			if prev, dup := out[d.ID]; dup {
				t.Fatalf("device %s is in stage %d and stage %d", d.ID, prev, i)
			}
			out[d.ID] = i
		}
	}
	return out
}

// checkPlanInvariants checks what every plan must satisfy.
func checkPlanInvariants(t *testing.T, p *Plan, devices []Device) {
	t.Helper()
	where := stageOf(t, p)
	excluded := map[string]bool{}
	for _, e := range p.Excluded {
		excluded[e.ID] = true
	}
	if len(where)+len(excluded) != len(devices) || p.FleetTotal != len(devices) {
		t.Fatalf("planned %d + excluded %d, fleet %d (FleetTotal %d)", len(where), len(excluded), len(devices), p.FleetTotal)
	}
	if p.Deployable != len(where) {
		t.Fatalf("Deployable %d, planned %d", p.Deployable, len(where))
	}
	for _, d := range devices {
		_, planned := where[d.ID]
		if planned == excluded[d.ID] {
			t.Fatalf("device %s: planned %v, excluded %v", d.ID, planned, excluded[d.ID])
		}
	}
	cum := 0
	perClassCum := map[string]int{}
	for _, s := range p.Stages {
		if !slices.IsSortedFunc(s.Devices, func(a, b PlannedDevice) int {
			return cmpDevice(a.Class, a.Name, a.ID, b.Class, b.Name, b.ID)
		}) {
			t.Fatalf("%s: devices not sorted", s.Name)
		}
		count := map[string]int{}
		offline := 0
		for _, d := range s.Devices {
			count[d.Class]++
			if d.Offline {
				offline++
			}
		}
		for c := range p.PerClassTotal {
			if s.PerClass[c] != count[c] {
				t.Fatalf("%s: PerClass[%s] = %d, counted %d", s.Name, c, s.PerClass[c], count[c])
			}
			perClassCum[c] += count[c]
			if perClassCum[c] > p.PerClassTotal[c] {
				t.Fatalf("%s: class %s over its total", s.Name, c)
			}
		}
		if len(s.PerClass) != len(p.PerClassTotal) {
			t.Fatalf("%s: PerClass has %d classes, PerClassTotal %d", s.Name, len(s.PerClass), len(p.PerClassTotal))
		}
		if s.Offline != offline {
			t.Fatalf("%s: Offline %d, counted %d", s.Name, s.Offline, offline)
		}
		cum += len(s.Devices)
		if s.CumulativeDevices != cum {
			t.Fatalf("%s: CumulativeDevices %d, want %d", s.Name, s.CumulativeDevices, cum)
		}
		if len(s.Devices) == 0 && cum < p.Deployable {
			t.Fatalf("%s is empty while %d devices are left", s.Name, p.Deployable-cum)
		}
		if s.Percent == 100 {
			for c, n := range p.PerClassTotal {
				if perClassCum[c] != n {
					t.Fatalf("%s at 100%%: class %s has %d of %d", s.Name, c, perClassCum[c], n)
				}
			}
		}
	}
}

func TestPlanRolloutTinyFleet(t *testing.T) {
	devices := testFleet(map[string]int{"jetson": 2, "rpi": 2, "gateway": 2})
	p := testPolicy("edgeinfer", 5, 1, 50, 100)
	plan, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	checkPlanInvariants(t, plan, devices)

	want := []struct {
		name       string
		perClass   map[string]int
		cumulative int
	}{
		// 5% of 2 rounds up to 1 device of every class.
		{"canary", map[string]int{"gateway": 1, "jetson": 1, "rpi": 1}, 3},
		// 50% of 2 is the 1 the canary already has: the stage would be
		// empty, so it takes one device of the class furthest behind (all
		// tie; by name).
		{"wave 1", map[string]int{"gateway": 1, "jetson": 0, "rpi": 0}, 4},
		{"wave 2", map[string]int{"gateway": 0, "jetson": 1, "rpi": 1}, 6},
	}
	if len(plan.Stages) != len(want) {
		t.Fatalf("got %d stages, want %d", len(plan.Stages), len(want))
	}
	for i, w := range want {
		s := plan.Stages[i]
		if s.Name != w.name || !reflect.DeepEqual(s.PerClass, w.perClass) || s.CumulativeDevices != w.cumulative {
			t.Errorf("stage %d = %s %v cum %d, want %s %v cum %d", i, s.Name, s.PerClass, s.CumulativeDevices, w.name, w.perClass, w.cumulative)
		}
	}
	if !plan.Stages[0].Canary || plan.Stages[0].ActualPercent != 50 {
		t.Errorf("canary: Canary %v ActualPercent %v, want true 50", plan.Stages[0].Canary, plan.Stages[0].ActualPercent)
	}
	wantWarnings := []string{"canary: 3 device(s), 50% of the deployable fleet (the policy asks 5%)", "wave 1: 50% of the fleet adds no device after rounding"}
	for _, w := range wantWarnings {
		if !containsPrefix(plan.Warnings, w) {
			t.Errorf("warnings %q lack %q", plan.Warnings, w)
		}
	}
}

func containsPrefix(list []string, prefix string) bool {
	return slices.ContainsFunc(list, func(s string) bool { return strings.HasPrefix(s, prefix) })
}

func TestPlanRolloutStratification(t *testing.T) {
	tests := []struct {
		name   string
		fleet  map[string]int
		policy *Policy
		// want is the cumulative per-class count after every stage.
		want []map[string]int
	}{
		{
			name:   "proportional per class",
			fleet:  map[string]int{"jetson": 600, "rpi": 300, "gateway": 100},
			policy: testPolicy("app", 2, 1, 10, 50, 100),
			want: []map[string]int{
				{"jetson": 12, "rpi": 6, "gateway": 2},
				{"jetson": 60, "rpi": 30, "gateway": 10},
				{"jetson": 300, "rpi": 150, "gateway": 50},
				{"jetson": 600, "rpi": 300, "gateway": 100},
			},
		},
		{
			name:   "rounds up per class",
			fleet:  map[string]int{"jetson": 33, "rpi": 7, "gateway": 1},
			policy: testPolicy("app", 1, 1, 25, 100),
			want: []map[string]int{
				{"jetson": 1, "rpi": 1, "gateway": 1},
				{"jetson": 9, "rpi": 2, "gateway": 1},
				{"jetson": 33, "rpi": 7, "gateway": 1},
			},
		},
		{
			name:   "min_per_class raises the canary, capped at the class",
			fleet:  map[string]int{"jetson": 200, "rpi": 40, "gateway": 2},
			policy: testPolicy("app", 5, 3, 100),
			want: []map[string]int{
				{"jetson": 10, "rpi": 3, "gateway": 2},
				{"jetson": 200, "rpi": 40, "gateway": 2},
			},
		},
		{
			name:   "min_per_class 0 still puts every class in the canary",
			fleet:  map[string]int{"jetson": 200, "rpi": 10},
			policy: testPolicy("app", 1, 0, 100),
			want: []map[string]int{
				{"jetson": 2, "rpi": 1},
				{"jetson": 200, "rpi": 10},
			},
		},
		{
			name:   "float percentages do not round up a whole device",
			fleet:  map[string]int{"a": 100000},
			policy: testPolicy("app", 1.1, 1, 33.3, 100),
			want: []map[string]int{
				{"a": 1100},
				{"a": 33300},
				{"a": 100000},
			},
		},
		{
			name:   "a wave equal to the previous one is not empty while devices are left",
			fleet:  map[string]int{"a": 10, "b": 10},
			policy: testPolicy("app", 5, 1, 5, 100),
			want: []map[string]int{
				{"a": 1, "b": 1},
				{"a": 2, "b": 1},
				{"a": 10, "b": 10},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devices := testFleet(tt.fleet)
			plan, err := PlanRollout(tt.policy, devices)
			if err != nil {
				t.Fatal(err)
			}
			checkPlanInvariants(t, plan, devices)
			if len(plan.Stages) != len(tt.want) {
				t.Fatalf("got %d stages, want %d", len(plan.Stages), len(tt.want))
			}
			cum := map[string]int{}
			for i, s := range plan.Stages {
				for c, n := range s.PerClass {
					cum[c] += n
				}
				if !reflect.DeepEqual(cum, tt.want[i]) {
					t.Errorf("after %s: %v, want %v", s.Name, cum, tt.want[i])
				}
			}
		})
	}
}

// Stages are shares of the fleet: the same policy scales with the fleet.
func TestPlanRolloutPercentagesScale(t *testing.T) {
	p := testPolicy("app", 1, 1, 10, 40, 100)
	for _, n := range []int{100, 1000, 10000} {
		devices := testFleet(map[string]int{"a": n})
		plan, err := PlanRollout(p, devices)
		if err != nil {
			t.Fatal(err)
		}
		checkPlanInvariants(t, plan, devices)
		for _, s := range plan.Stages {
			if s.ActualPercent != s.Percent {
				t.Errorf("fleet %d, %s: reaches %v%%, want %v%%", n, s.Name, s.ActualPercent, s.Percent)
			}
		}
	}
}

func TestCumulativeTarget(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := r.IntN(5000)
		a := float64(r.IntN(10001)) / 100 // 0.00 .. 100.00
		b := float64(r.IntN(10001)) / 100
		if a > b {
			a, b = b, a
		}
		ta, tb := cumulativeTarget(n, a), cumulativeTarget(n, b)
		if ta > tb {
			t.Fatalf("n=%d: %v%% -> %d, %v%% -> %d: not monotone", n, a, ta, b, tb)
		}
		if tb > n || ta < 0 {
			t.Fatalf("n=%d: %v%% -> %d out of range", n, b, tb)
		}
		if float64(ta) < float64(n)*a/100-1e-6 || float64(ta) >= float64(n)*a/100+1 {
			t.Fatalf("n=%d: %v%% -> %d, not the rounded-up share", n, a, ta)
		}
		if cumulativeTarget(n, 100) != n {
			t.Fatalf("n=%d: 100%% -> %d", n, cumulativeTarget(n, 100))
		}
	}
}

func TestPlanRolloutOfflineAndExcluded(t *testing.T) {
	devices := testFleet(map[string]int{"jetson": 20, "rpi": 20})
	set := func(name string, st RegistryStatus, reason string, resolved bool) {
		for i := range devices {
			if devices[i].Name == name {
				devices[i].Status, devices[i].Reason, devices[i].Resolved = st, reason, resolved
				return
			}
		}
		t.Fatalf("no device %s", name)
	}
	set("jetson-003", StatusQuarantined, "failed rollout r1", false)
	set("rpi-007", StatusDiscrepancy, "Consul has no node named \"rpi-007\"", false)
	set("rpi-008", StatusDiscrepancy, "Consul has no node named \"rpi-008\"", true) // resolved: planned
	for _, n := range []string{"jetson-001", "jetson-002", "rpi-001", "rpi-002", "rpi-003"} {
		set(n, StatusOffline, "Nomad node status down", false)
	}
	p := testPolicy("app", 5, 1, 50, 100)
	p.Offline.MaxOfflinePercent = 10
	plan, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	checkPlanInvariants(t, plan, devices)

	if plan.FleetTotal != 40 || plan.Deployable != 38 {
		t.Errorf("FleetTotal %d Deployable %d, want 40 38", plan.FleetTotal, plan.Deployable)
	}
	wantExcluded := []ExcludedDevice{
		{ID: "id-jetson-003", Name: "jetson-003", Class: "jetson", Status: StatusQuarantined, Reason: "quarantined: failed rollout r1"},
		{ID: "id-rpi-007", Name: "rpi-007", Class: "rpi", Status: StatusDiscrepancy, Reason: "registry discrepancy: Consul has no node named \"rpi-007\""},
	}
	if !reflect.DeepEqual(plan.Excluded, wantExcluded) {
		t.Errorf("Excluded = %+v\nwant %+v", plan.Excluded, wantExcluded)
	}
	if !reflect.DeepEqual(plan.PerClassTotal, map[string]int{"jetson": 19, "rpi": 19}) {
		t.Errorf("PerClassTotal = %v", plan.PerClassTotal)
	}
	offline := 0
	for _, s := range plan.Stages {
		for _, d := range s.Devices {
			isOffline := strings.HasPrefix(d.Name, "jetson-00") && (d.Name == "jetson-001" || d.Name == "jetson-002") ||
				d.Name == "rpi-001" || d.Name == "rpi-002" || d.Name == "rpi-003"
			if d.Offline != isOffline {
				t.Errorf("%s: Offline %v, want %v", d.Name, d.Offline, isOffline)
			}
		}
		offline += s.Offline
	}
	if offline != 5 {
		t.Errorf("offline over all stages %d, want 5", offline)
	}
	if !containsPrefix(plan.Warnings, "5 of 38 deployable devices are offline (13.16%), more than offline.max_offline_percent 10%") {
		t.Errorf("no fleet offline warning in %q", plan.Warnings)
	}
}

// Offline devices keep their place, and a class whose canary devices are
// all offline gets an online one too.
func TestPlanRolloutOfflineCanaryKeepsPlace(t *testing.T) {
	devices := testFleet(map[string]int{"jetson": 30, "rpi": 30})
	p := testPolicy("app", 1, 1, 100)
	before, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	// Take the canary's rpi offline.
	var rpi string
	for _, d := range before.Stages[0].Devices {
		if d.Class == "rpi" {
			rpi = d.ID
		}
	}
	for i := range devices {
		if devices[i].ID == rpi {
			devices[i].Status = StatusOffline
		}
	}
	after, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	checkPlanInvariants(t, after, devices)
	canary := after.Stages[0]
	if canary.PerClass["rpi"] != 2 || canary.PerClass["jetson"] != 1 || canary.Offline != 1 {
		t.Fatalf("canary %v offline %d, want rpi 2 (one offline) and jetson 1", canary.PerClass, canary.Offline)
	}
	if !slices.ContainsFunc(canary.Devices, func(d PlannedDevice) bool { return d.ID == rpi && d.Offline }) {
		t.Errorf("offline device %s left the canary: %+v", rpi, canary.Devices)
	}
}

func TestPlanRolloutWarnings(t *testing.T) {
	devices := testFleet(map[string]int{"jetson": 10, "rpi": 1, "gateway": 2})
	for i := range devices {
		if devices[i].Class == "gateway" {
			devices[i].Status = StatusQuarantined
		}
	}
	devices[len(devices)-1].Eligibility = "ineligible"
	p := testPolicy("app", 5, 2, 100, 100)
	plan, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	checkPlanInvariants(t, plan, devices)
	for _, w := range []string{
		"class gateway: all 2 devices are excluded",
		"class rpi has 1 deployable device(s), fewer than the canary's min_per_class 2",
		"1 device(s) are ineligible for scheduling",
		"wave 2 adds no device",
	} {
		if !containsPrefix(plan.Warnings, w) {
			t.Errorf("warnings %q lack %q", plan.Warnings, w)
		}
	}
	if plan.PerClassTotal["gateway"] != 0 {
		t.Errorf("PerClassTotal = %v", plan.PerClassTotal)
	}

	p = testPolicy("app", 5, 1, 50)
	plan, err = PlanRollout(p, testFleet(map[string]int{"a": 10}))
	if err != nil {
		t.Fatal(err)
	}
	if !containsPrefix(plan.Warnings, "the last stage (wave 1) reaches 50%: 5 deployable device(s) stay") {
		t.Errorf("warnings %q lack the last-stage warning", plan.Warnings)
	}
	p.Strategy = StrategyAB
	plan, _ = PlanRollout(p, testFleet(map[string]int{"a": 10}))
	if containsPrefix(plan.Warnings, "the last stage") {
		t.Errorf("a-b keeps a share on purpose, no warning expected: %q", plan.Warnings)
	}
}

func TestPlanRolloutAllExcluded(t *testing.T) {
	devices := testFleet(map[string]int{"a": 3})
	for i := range devices {
		devices[i].Status = StatusQuarantined
	}
	plan, err := PlanRollout(testPolicy("app", 5, 1, 100), devices)
	if err != nil {
		t.Fatal(err)
	}
	checkPlanInvariants(t, plan, devices)
	if len(plan.Excluded) != 3 || !containsPrefix(plan.Warnings, "no deployable device") {
		t.Errorf("excluded %d, warnings %q", len(plan.Excluded), plan.Warnings)
	}
}

func TestPlanRolloutErrors(t *testing.T) {
	fleet := testFleet(map[string]int{"a": 3})
	dup := append(slices.Clone(fleet), fleet[0])
	tests := []struct {
		name    string
		policy  *Policy
		devices []Device
		want    string
	}{
		{"nil policy", nil, fleet, "no policy"},
		{"empty fleet", testPolicy("app", 5, 1, 100), nil, "the fleet is empty"},
		{"duplicate ID", testPolicy("app", 5, 1, 100), dup, `device ID "id-a-000" appears more than once`},
		{"zero canary", testPolicy("app", 0, 1, 100), fleet, "canary: percent 0 is not in (0, 100]"},
		{"over 100", testPolicy("app", 5, 1, 120), fleet, "wave 1: percent 120 is not in (0, 100]"},
		{"decreasing", testPolicy("app", 5, 1, 50, 40), fleet, "wave 2: percent 40 is below the previous stage's 50"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := PlanRollout(tt.policy, tt.devices)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if plan != nil {
				t.Errorf("plan = %+v, want nil", plan)
			}
		})
	}
}

func TestPlanRolloutDeterministic(t *testing.T) {
	devices := randomFleet(rand.New(rand.NewPCG(7, 7)), 500, 4)
	p := testPolicy("app", 2, 1, 20, 60, 100)
	want, err := PlanRollout(p, devices)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(8, 8))
	for range 5 {
		shuffled := slices.Clone(devices)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got, err := PlanRollout(p, shuffled)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatal("plan depends on the order of the devices")
		}
	}
	// Another rollout orders the devices differently.
	other, _ := PlanRollout(testPolicy("other", 2, 1, 20, 60, 100), devices)
	if reflect.DeepEqual(other.Stages[0].Devices, want.Stages[0].Devices) {
		t.Error("two rollouts picked the same canary: the order does not depend on the rollout name")
	}
}

// randomFleet makes n devices over the given number of classes with random
// IDs; about 5% are offline and 3% excluded.
func randomFleet(r *rand.Rand, n, classes int) []Device {
	out := make([]Device, 0, n)
	for range n {
		out = append(out, randomDevice(r, classes))
	}
	return out
}

func randomDevice(r *rand.Rand, classes int) Device {
	id := fmt.Sprintf("%08x-%04x-%04x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff)
	d := Device{ID: id, Name: "node-" + id[:8], Class: fmt.Sprintf("class%d", r.IntN(classes)), Status: StatusOK}
	switch x := r.IntN(100); {
	case x < 5:
		d.Status = StatusOffline
	case x < 7:
		d.Status = StatusQuarantined
	case x < 8:
		d.Status = StatusDiscrepancy
	}
	return d
}

// Adding or removing one device moves at most one existing device per stage
// boundary... and in practice no more than the number of stages in total.
func TestPlanRolloutStableUnderOneDeviceChange(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 4242))
	policies := []*Policy{
		testPolicy("app", 5, 1, 50, 100),
		testPolicy("app", 2, 1, 10, 25, 50, 100),
		testPolicy("app", 1, 2, 5, 20, 40, 60, 80, 100),
	}
	worst := 0
	for iter := range 600 {
		p := policies[iter%len(policies)]
		n := 5 + r.IntN(400)
		classes := 1 + r.IntN(4)
		fleet := randomFleet(r, n, classes)
		base, err := PlanRollout(p, fleet)
		if err != nil {
			t.Fatal(err)
		}
		checkPlanInvariants(t, base, fleet)

		grown := append(slices.Clone(fleet), randomDevice(r, classes))
		victim := r.IntN(len(fleet))
		shrunk := slices.Delete(slices.Clone(fleet), victim, victim+1)
		for _, changed := range [][]Device{grown, shrunk} {
			after, err := PlanRollout(p, changed)
			if err != nil {
				t.Fatal(err)
			}
			checkPlanInvariants(t, after, changed)
			moved := movedDevices(t, base, after)
			worst = max(worst, moved)
			if moved > len(base.Stages) {
				t.Fatalf("iteration %d (%d devices, %d classes, %d stages): one device changed, %d others moved stage",
					iter, n, classes, len(base.Stages), moved)
			}
		}
	}
	t.Logf("most devices moved by one device change: %d", worst)
}

// movedDevices counts the devices planned in both plans whose stage differs.
func movedDevices(t *testing.T, a, b *Plan) int {
	sa, sb := stageOf(t, a), stageOf(t, b)
	moved := 0
	for id, i := range sa {
		if j, ok := sb[id]; ok && i != j {
			moved++
		}
	}
	return moved
}
