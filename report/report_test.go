package report

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetplan/fleetplan/scheduler"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// recorded is a rollout run as stored in Consul, recorded from real runs on
// the dev cluster (testdata/runs).
type recorded struct {
	Rollout *scheduler.Rollout        `json:"rollout"`
	Devices []*scheduler.DeviceRecord `json:"devices"`
}

func loadRun(t *testing.T, path string) *scheduler.Rollout {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec recorded
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	rec.Rollout.Devices = map[string]*scheduler.DeviceRecord{}
	for _, d := range rec.Devices {
		rec.Rollout.Devices[d.ID] = d
	}
	return rec.Rollout
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./report/ -update` to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run `go test ./report/ -update` if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestGoldenReports(t *testing.T) {
	runs, _ := filepath.Glob("testdata/runs/*.json")
	if len(runs) == 0 {
		t.Fatal("no recorded runs in testdata/runs")
	}
	for _, path := range runs {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			r := loadRun(t, path)
			rep := Build(r)
			var md, js, state bytes.Buffer
			if err := WriteMarkdown(&md, rep); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&js, rep); err != nil {
				t.Fatal(err)
			}
			WriteDeployState(&state, NewDeployState(r))
			golden(t, filepath.Join("testdata", name+".md.golden"), md.Bytes())
			golden(t, filepath.Join("testdata", name+".json.golden"), js.Bytes())
			golden(t, filepath.Join("testdata", name+".state.golden"), state.Bytes())
		})
	}
}

// The report's counts agree with the recorded devices.
func TestReportCountsMatchDevices(t *testing.T) {
	runs, _ := filepath.Glob("testdata/runs/*.json")
	for _, path := range runs {
		r := loadRun(t, path)
		rep := Build(r)
		total := 0
		for _, s := range rep.Status {
			total += s.Count
		}
		if total != len(r.Devices)+len(r.Excluded) {
			t.Errorf("%s: status rows add up to %d, the run has %d devices", path, total, len(r.Devices)+len(r.Excluded))
		}
		if !strings.HasPrefix(mdOf(t, rep), "## Fleet Deployment Report: "+r.App+" v"+r.Version+"\n") {
			t.Errorf("%s: wrong header", path)
		}
	}
}

func mdOf(t *testing.T, rep *Report) string {
	var b bytes.Buffer
	if err := WriteMarkdown(&b, rep); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDeployStateFields(t *testing.T) {
	r := &scheduler.Rollout{App: "a", Version: "2", Strategy: scheduler.StrategyCanaryRolling, Phase: scheduler.PhaseAwaitingApproval,
		Stages: []scheduler.StageRecord{{Name: "canary", Canary: true}, {Name: "wave 1"}},
		Devices: map[string]*scheduler.DeviceRecord{
			"1": {DeviceRef: scheduler.DeviceRef{ID: "1", Name: "d1"}, State: scheduler.DeviceHealthy},
			"2": {DeviceRef: scheduler.DeviceRef{ID: "2", Name: "d2"}, Stage: 1, State: scheduler.DeviceSkippedOffline},
			"3": {DeviceRef: scheduler.DeviceRef{ID: "3", Name: "d3"}, Stage: 1, State: scheduler.DeviceQuarantined},
		}}
	s := NewDeployState(r)
	if s.Phase != "VERIFY" || s.HealthyCount != 1 || s.SkippedCount != 1 || s.QuarantinedCount != 1 || s.FleetTotal != 3 || !s.RollbackAvailable {
		t.Fatalf("%+v", s)
	}
	if !strings.Contains(s.NextAction, "fleetplan approve a") {
		t.Errorf("next action %q does not say how to approve", s.NextAction)
	}
	var b bytes.Buffer
	WriteDeployState(&b, s)
	for _, field := range []string{"phase:", "strategy:", "artifact:", "fleet_total:", "deployed_count:", "healthy_count:", "quarantined_count:", "skipped_count:", "rollback_available:", "current_wave:", "last_action:", "next_action:", "blockers:"} {
		if !strings.Contains(b.String(), "\n"+field) {
			t.Errorf("state block lacks %s", field)
		}
	}
}
