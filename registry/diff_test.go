package registry

import (
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

var (
	diffNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	diffBefore = diffNow.Add(-time.Hour)
	jetsonCaps = scheduler.Capabilities{Arch: "arm64", OS: "linux", Kernel: "5.15", MemoryMB: 8192, Accelerator: "cuda", Model: "orin-nano"}
)

// nomadNode is a ready Nomad node named name with ID "id-"+name.
func nomadNode(name string, status string) scheduler.NomadNode {
	return scheduler.NomadNode{
		ID: "id-" + name, Name: name, Class: "jetson", Datacenter: "dc1", Status: status,
		Eligibility: "eligible", Address: "127.0.0.2", Capabilities: jetsonCaps,
		Meta: map[string]string{"fleet": "vision"}, Apps: map[string]scheduler.AppSlot{"edgeinfer": {Slot: "blue", Version: "1.0"}},
	}
}

func consulNode(name, serf string) scheduler.ConsulNode {
	return scheduler.ConsulNode{Name: name, Address: "127.0.0.2", SerfStatus: serf}
}

// regDevice is the registry entry of nomadNode(name, "ready") seen at
// diffBefore with the given status.
func regDevice(name string, st scheduler.RegistryStatus, reason string) scheduler.Device {
	n := nomadNode(name, "ready")
	return scheduler.Device{
		ID: n.ID, Name: name, Class: n.Class, Datacenter: n.Datacenter, NomadStatus: "ready", Eligibility: "eligible",
		ConsulStatus: "passing", Address: n.Address, Capabilities: jetsonCaps, Meta: n.Meta, Apps: n.Apps,
		LastHeartbeat: diffBefore, Status: st, Reason: reason,
	}
}

func reg(ds ...scheduler.Device) map[string]scheduler.Device {
	out := map[string]scheduler.Device{}
	for _, d := range ds {
		out[d.ID] = d
	}
	return out
}

func observed(nomad []scheduler.NomadNode, consul []scheduler.ConsulNode) scheduler.Observed {
	o := scheduler.Observed{Nomad: map[string]scheduler.NomadNode{}, Consul: map[string]scheduler.ConsulNode{}}
	for _, n := range nomad {
		o.Nomad[n.Name] = n
	}
	for _, c := range consul {
		o.Consul[c.Name] = c
	}
	return o
}

func TestDiff(t *testing.T) {
	changedCaps := nomadNode("j1", "ready")
	changedCaps.Capabilities.Kernel = "6.1"
	changedCaps.Capabilities.MemoryMB = 16384
	changedCaps.Class = "jetson-agx"
	downNewCaps := nomadNode("j1", "down")
	downNewCaps.Capabilities.Kernel = "6.1"
	withHeartbeat := nomadNode("j1", "ready")
	withHeartbeat.LastHeartbeat = diffNow.Add(-5 * time.Second)
	resolved := regDevice("j1", scheduler.StatusDiscrepancy, `Nomad node is ready but Consul has no node named "j1"`)
	resolved.Resolved = true
	quarantined := regDevice("j1", scheduler.StatusQuarantined, "failed rollout r1")

	tests := []struct {
		name    string
		current map[string]scheduler.Device
		obs     scheduler.Observed
		key     string                    // the device to check in next
		want    func(d *scheduler.Device) // adjusts the expected device, starting from current[key] or zero
		status  scheduler.RegistryStatus
		reason  string // substring
		events  []string
	}{
		{
			name:   "new device on both sides is added ok",
			obs:    observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:    "id-j1",
			status: scheduler.StatusOK,
			events: []string{"id-j1 added"},
		},
		{
			name:   "new Nomad node without Consul agent is a discrepancy",
			obs:    observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, nil),
			key:    "id-j1",
			status: scheduler.StatusDiscrepancy,
			reason: `Consul has no node named "j1"`,
			events: []string{"id-j1 added", "id-j1 discrepancy"},
		},
		{
			name:   "new Consul node without Nomad node is a discrepancy keyed by name",
			obs:    observed(nil, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:    "consul:j1",
			status: scheduler.StatusDiscrepancy,
			reason: `has no Nomad node named "j1"`,
			events: []string{"consul:j1 added", "consul:j1 discrepancy"},
		},
		{
			name:    "unchanged ok device: no event, heartbeat moves",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = diffNow },
			status:  scheduler.StatusOK,
		},
		{
			name:    "heartbeat reported by Nomad is used",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{withHeartbeat}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = withHeartbeat.LastHeartbeat },
			status:  scheduler.StatusOK,
		},
		{
			name:    "serf warning still counts as alive",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "warning")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = diffNow; d.ConsulStatus = "warning" },
			status:  scheduler.StatusOK,
		},
		{
			name:    "Nomad down, serf passing: offline",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "down")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down" },
			status:  scheduler.StatusOffline,
			reason:  "Nomad node status down",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "Nomad disconnected: offline",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "disconnected")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "disconnected" },
			status:  scheduler.StatusOffline,
			reason:  "Nomad node status disconnected",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "serf critical, Nomad ready: offline",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "critical")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.ConsulStatus = "critical" },
			status:  scheduler.StatusOffline,
			reason:  "Consul serfHealth critical",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "both down is offline, not a discrepancy; capabilities kept",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{downNewCaps}, []scheduler.ConsulNode{consulNode("j1", "critical")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down"; d.ConsulStatus = "critical" },
			status:  scheduler.StatusOffline,
			reason:  "Nomad node status down; Consul serfHealth critical",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "gone from both: offline, kept with capabilities and heartbeat",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed(nil, nil),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = ""; d.ConsulStatus = "" },
			status:  scheduler.StatusOffline,
			reason:  "neither Nomad nor Consul lists the node",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "Nomad down and Consul forgot it: offline",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "down")}, nil),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down"; d.ConsulStatus = "" },
			status:  scheduler.StatusOffline,
			reason:  `Nomad node status down; Consul has no node named "j1"`,
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "Nomad forgot it, serf critical: offline",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed(nil, []scheduler.ConsulNode{consulNode("j1", "critical")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = ""; d.ConsulStatus = "critical" },
			status:  scheduler.StatusOffline,
			reason:  "Nomad no longer lists the node",
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "Nomad forgot it, serf passing: discrepancy",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed(nil, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = ""; d.LastHeartbeat = diffNow },
			status:  scheduler.StatusDiscrepancy,
			reason:  `has no Nomad node named "j1"`,
			events:  []string{"id-j1 discrepancy"},
		},
		{
			name:    "Consul agent gone, Nomad ready: discrepancy",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, nil),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.ConsulStatus = ""; d.LastHeartbeat = diffNow },
			status:  scheduler.StatusDiscrepancy,
			reason:  `Consul has no node named "j1"`,
			events:  []string{"id-j1 discrepancy"},
		},
		{
			name:    "offline comes back: online",
			current: reg(regDevice("j1", scheduler.StatusOffline, "Nomad node status down")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = diffNow },
			status:  scheduler.StatusOK,
			events:  []string{"id-j1 online"},
		},
		{
			name:    "offline device that stays offline: no event",
			current: reg(regDevice("j1", scheduler.StatusOffline, "Nomad node status down")),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "down")}, []scheduler.ConsulNode{consulNode("j1", "critical")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down"; d.ConsulStatus = "critical" },
			status:  scheduler.StatusOffline,
		},
		{
			name:    "capabilities and class changed: updated with an event",
			current: reg(regDevice("j1", scheduler.StatusOK, "")),
			obs:     observed([]scheduler.NomadNode{changedCaps}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want: func(d *scheduler.Device) {
				d.Capabilities = changedCaps.Capabilities
				d.Class = "jetson-agx"
				d.LastHeartbeat = diffNow
			},
			status: scheduler.StatusOK,
			events: []string{`id-j1 capabilities-changed class "jetson" -> "jetson-agx", kernel "5.15" -> "6.1", memory_mb 8192 -> 16384`},
		},
		{
			name:    "discrepancy clears when both agree; Resolved cleared",
			current: reg(resolved),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = diffNow; d.Resolved = false },
			status:  scheduler.StatusOK,
			events:  []string{"id-j1 discrepancy-cleared"},
		},
		{
			name:    "resolved discrepancy that persists stays resolved, no event",
			current: reg(resolved),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, nil),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.LastHeartbeat = diffNow; d.ConsulStatus = "" },
			status:  scheduler.StatusDiscrepancy,
			reason:  `Consul has no node named "j1"`,
		},
		{
			name:    "resolved discrepancy survives going offline",
			current: reg(resolved),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "down")}, nil),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down"; d.ConsulStatus = "" },
			status:  scheduler.StatusOffline,
			events:  []string{"id-j1 offline"},
		},
		{
			name:    "quarantined stays quarantined when it goes down; fields still updated",
			current: reg(quarantined),
			obs:     observed([]scheduler.NomadNode{nomadNode("j1", "down")}, []scheduler.ConsulNode{consulNode("j1", "critical")}),
			key:     "id-j1",
			want:    func(d *scheduler.Device) { d.NomadStatus = "down"; d.ConsulStatus = "critical" },
			status:  scheduler.StatusQuarantined,
			reason:  "failed rollout r1",
		},
		{
			name:    "quarantined stays quarantined on a discrepancy; capabilities still tracked",
			current: reg(quarantined),
			obs:     observed([]scheduler.NomadNode{changedCaps}, nil),
			key:     "id-j1",
			want: func(d *scheduler.Device) {
				d.ConsulStatus = ""
				d.Capabilities = changedCaps.Capabilities
				d.Class = "jetson-agx"
				d.LastHeartbeat = diffNow
			},
			status: scheduler.StatusQuarantined,
			reason: "failed rollout r1",
			events: []string{`id-j1 capabilities-changed class "jetson" -> "jetson-agx", kernel "5.15" -> "6.1", memory_mb 8192 -> 16384`},
		},
		{
			name: "Consul-only device folds into the Nomad node when Nomad registers it",
			current: reg(scheduler.Device{ID: "consul:j1", Name: "j1", ConsulStatus: "passing", Address: "127.0.0.2",
				Status: scheduler.StatusDiscrepancy, Reason: `has no Nomad node named "j1"`, LastHeartbeat: diffBefore}),
			obs:    observed([]scheduler.NomadNode{nomadNode("j1", "ready")}, []scheduler.ConsulNode{consulNode("j1", "passing")}),
			key:    "id-j1",
			want:   func(d *scheduler.Device) { *d = regDevice("j1", scheduler.StatusOK, ""); d.LastHeartbeat = diffNow },
			status: scheduler.StatusOK,
			events: []string{"id-j1 discrepancy-cleared"},
		},
		{
			name: "Consul-only device that Consul forgets is removed",
			current: reg(scheduler.Device{ID: "consul:j1", Name: "j1", ConsulStatus: "passing",
				Status: scheduler.StatusDiscrepancy, Reason: "x", LastHeartbeat: diffBefore}),
			obs:    observed(nil, nil),
			events: []string{"consul:j1 removed"},
		},
		{
			name:    "re-registered node: old ID removed, new one added, quarantine carried over",
			current: reg(quarantined),
			obs: observed([]scheduler.NomadNode{func() scheduler.NomadNode { n := nomadNode("j1", "ready"); n.ID = "id-j1-new"; return n }()},
				[]scheduler.ConsulNode{consulNode("j1", "passing")}),
			key: "id-j1-new",
			want: func(d *scheduler.Device) {
				*d = regDevice("j1", scheduler.StatusQuarantined, "failed rollout r1 (carried over from node id-j1)")
				d.ID = "id-j1-new"
				d.LastHeartbeat = diffNow
			},
			status: scheduler.StatusQuarantined,
			reason: "carried over from node id-j1",
			events: []string{"id-j1 removed", "id-j1-new added"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.current == nil {
				tt.current = map[string]scheduler.Device{}
			}
			next, events := Diff(maps.Clone(tt.current), tt.obs, diffNow)
			var got []string
			for _, e := range events {
				s := e.Device + " " + e.Kind
				if e.Kind == scheduler.EventCapabilitiesChanged {
					s += " " + e.Detail
				}
				got = append(got, s)
			}
			if !reflect.DeepEqual(got, tt.events) {
				t.Errorf("events = %q, want %q (%+v)", got, tt.events, events)
			}
			if tt.key == "" {
				if len(next) != 0 {
					t.Errorf("next = %+v, want empty", next)
				}
				return
			}
			d, ok := next[tt.key]
			if !ok {
				t.Fatalf("next has no %s: %+v", tt.key, next)
			}
			if len(next) != 1 {
				t.Errorf("next has %d devices, want 1: %+v", len(next), next)
			}
			if d.ID != tt.key {
				t.Errorf("ID = %q, want the key %q", d.ID, tt.key)
			}
			if d.Status != tt.status || !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("status %s (%q), want %s (%q)", d.Status, d.Reason, tt.status, tt.reason)
			}
			if tt.status == scheduler.StatusOK && d.Reason != "" {
				t.Errorf("ok device with reason %q", d.Reason)
			}
			if tt.want != nil {
				want := tt.current[tt.key]
				tt.want(&want)
				want.Status, want.Reason = d.Status, d.Reason
				if !reflect.DeepEqual(d, want) {
					t.Errorf("device =\n%+v\nwant\n%+v", d, want)
				}
			}
		})
	}
}

func TestDiffEventsSorted(t *testing.T) {
	var nomad []scheduler.NomadNode
	var consul []scheduler.ConsulNode
	for _, n := range []string{"c", "a", "d", "b"} {
		nomad = append(nomad, nomadNode(n, "ready"))
	}
	consul = append(consul, consulNode("a", "passing"), consulNode("x", "passing"))
	for range 20 {
		_, events := Diff(nil, observed(nomad, consul), diffNow)
		var got []string
		for _, e := range events {
			got = append(got, e.Device+" "+e.Kind)
		}
		want := []string{
			"consul:x added", "consul:x discrepancy",
			"id-a added",
			"id-b added", "id-b discrepancy",
			"id-c added", "id-c discrepancy",
			"id-d added", "id-d discrepancy",
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("events = %q, want %q", got, want)
		}
	}
}

// A registry fed back into Diff with the same observation is stable.
func TestDiffIdempotent(t *testing.T) {
	obs := observed(
		[]scheduler.NomadNode{nomadNode("a", "ready"), nomadNode("b", "down"), nomadNode("c", "ready")},
		[]scheduler.ConsulNode{consulNode("a", "passing"), consulNode("b", "critical"), consulNode("d", "passing")},
	)
	first, _ := Diff(nil, obs, diffNow)
	second, events := Diff(maps.Clone(first), obs, diffNow)
	if len(events) != 0 {
		t.Errorf("second scan produced events %+v", events)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second scan changed the registry:\n%+v\n%+v", first, second)
	}
}
