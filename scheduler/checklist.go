package scheduler

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fleetplan/fleetplan/contract"
)

// ChecklistItem is one item of the pre-flight checklist.
type ChecklistItem struct {
	Name string `json:"name"`
	// OK is set when the item is checked; an unchecked item stops the
	// rollout before it touches a device.
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	// Fix says what makes an unchecked item pass.
	Fix string `json:"fix,omitempty"`
}

// Checklist is the pre-flight checklist of a run (invariant I3): printed by
// `plan` and `apply`, evaluated in PREPARE before anything is registered or
// switched. If any item is unchecked, the rollout STOPS with the remedy.
type Checklist []ChecklistItem

// Unchecked returns the items that did not pass.
func (cl Checklist) Unchecked() []ChecklistItem {
	var out []ChecklistItem
	for _, it := range cl {
		if !it.OK {
			out = append(out, it)
		}
	}
	return out
}

// Checklist item names.
const (
	CheckRegistry   = "registry in sync"
	CheckJobspec    = "jobspec parsed by Nomad"
	CheckTriggers   = "rollback triggers defined"
	CheckCanary     = "canary covers every device class"
	CheckAgent      = "device agent on every target device"
	CheckLayers     = "every declared layer reports a check"
	CheckOldHealthy = "old slot healthy before starting"
)

// PreflightInput is what the checklist is computed from.
type PreflightInput struct {
	Policy *Policy
	Plan   *Plan
	// RegistryErr is the error of the registry sync, if any.
	RegistryErr error
	// JobspecErr is the error Nomad gave parsing the jobspec, if any.
	JobspecErr error
	// Active is the slot of the stable version ("" on a first install).
	Active string
	// Health is each online target device's health as seen from the
	// active slot (node checks of the device agent, the active
	// allocation and its checks); HealthErr when it could not be read.
	Health    map[string]DeviceHealth
	HealthErr error
}

// BuildChecklist evaluates the pre-flight checklist. It is pure: the
// controller and `fleetplan plan` gather the input.
func BuildChecklist(in PreflightInput) Checklist {
	p := in.Policy
	var cl Checklist
	add := func(name string, ok bool, detail, fix string) {
		it := ChecklistItem{Name: name, OK: ok, Detail: detail}
		if !ok {
			it.Fix = fix
		}
		cl = append(cl, it)
	}

	if in.RegistryErr != nil || in.Plan == nil {
		add(CheckRegistry, false, fmt.Sprintf("the registry could not be synced: %v", in.RegistryErr), "check that Nomad and Consul answer, then sync the registry")
	} else {
		add(CheckRegistry, true, fmt.Sprintf("%d devices in the fleet, %d deployable, %d excluded", in.Plan.FleetTotal, in.Plan.Deployable, len(in.Plan.Excluded)), "")
	}

	if in.JobspecErr != nil {
		add(CheckJobspec, false, in.JobspecErr.Error(), "fix the jobspec (Nomad's job validation shows the same error)")
	} else {
		add(CheckJobspec, true, "the Nomad server parsed "+p.Release.Jobspec, "")
	}

	triggers := []string{fmt.Sprintf("max_failure_percent %g", p.Rollback.MaxFailurePercent), fmt.Sprintf("max_offline_after_switch_percent %g", p.Rollback.MaxOfflineAfterSwitchPercent)}
	if p.Rollback.MaxErrorRate > 0 {
		triggers = append(triggers, fmt.Sprintf("max_error_rate %g", p.Rollback.MaxErrorRate))
	}
	if p.Rollback.MaxP95LatencyIncreasePercent > 0 {
		triggers = append(triggers, fmt.Sprintf("max_p95_latency_increase_percent %g", p.Rollback.MaxP95LatencyIncreasePercent))
	}
	add(CheckTriggers, p.Rollback.MaxFailurePercent >= 0 && p.Rollback.MaxFailurePercent < 100, strings.Join(triggers, ", "),
		"set rollback.max_failure_percent below 100 so a failing release is taken back")

	if in.Plan != nil {
		add(canaryCoverage(in.Plan))
	}

	if in.HealthErr != nil {
		add(CheckAgent, false, "device health could not be read: "+in.HealthErr.Error(), "check that Consul and Nomad answer, then try again")
		return cl
	}
	ids := sortedKeys(in.Health)
	nameOf := deviceNamer(in.Plan)
	declared := DeclaredLayers(p)
	if len(declared) > 0 {
		var missing []string
		for _, id := range ids {
			if !hasAgent(in.Health[id].Checks) {
				missing = append(missing, nameOf(id))
			}
		}
		add(CheckAgent, len(missing) == 0, fmt.Sprintf("layers %s need the device agent; %s", layerList(declared), countOrNames(len(ids), missing, "reachable devices run it", "without it")),
			"install the device agent on every target device")
	} else {
		add(CheckAgent, true, "not needed: the policy declares no system or functional layer", "")
	}

	// Layer 2 is the device's own (the agent reports it before any
	// instance runs); layer 4 is a check of the new instance, so it is
	// judged at each device's gate, where a missing one fails the device.
	var noLayer []string
	for _, id := range ids {
		h := in.Health[id]
		agent := hasAgent(h.Checks)
		if agent && p.Health.System != nil && !hasLayer(h.Checks, 2) {
			noLayer = append(noLayer, nameOf(id)+" (layer 2)")
		}
	}
	layersDetail := countOrNames(len(ids), noLayer, "reachable devices with the agent report layer 2", "without a layer 2 check")
	if p.Health.System == nil {
		layersDetail = "layer 3 is Nomad's own check"
	}
	if p.Health.Functional != nil {
		layersDetail += "; layer 4 is checked on every switched device at its gate (no check there fails the device)"
	}
	add(CheckLayers, len(noLayer) == 0, layersDetail,
		"make the device agent report the system layer, or remove the system block from the policy")
	if in.Active == "" {
		add(CheckOldHealthy, true, "first install: there is no old slot", "")
		return cl
	}
	var unhealthy []string
	for _, id := range ids {
		h := in.Health[id]
		name := nameOf(id)
		switch {
		case h.Alloc == nil || h.Alloc.Status != "running":
			unhealthy = append(unhealthy, name+" (no running allocation of the old slot)")
		default:
			for _, ch := range h.Checks {
				if ch.Status == "critical" {
					unhealthy = append(unhealthy, fmt.Sprintf("%s (%s critical)", name, ch.Name))
					break
				}
			}
		}
	}
	add(CheckOldHealthy, len(unhealthy) == 0, countOrNames(len(ids), unhealthy, "reachable devices run the old slot with its checks passing", "not healthy"),
		"fix or quarantine those devices before rolling out")
	return cl
}

func canaryCoverage(plan *Plan) (string, bool, string, string) {
	classes := map[string]bool{}
	for _, st := range plan.Stages {
		for _, d := range st.Devices {
			classes[d.Class] = true
		}
	}
	covered := map[string]bool{}
	if len(plan.Stages) > 0 {
		for _, d := range plan.Stages[0].Devices {
			covered[d.Class] = true
		}
	}
	var missing []string
	for cl := range classes {
		if !covered[cl] {
			missing = append(missing, cl)
		}
	}
	sort.Strings(missing)
	if len(classes) == 0 {
		return CheckCanary, false, "no deployable device", "check the fleet selector and the device registry"
	}
	if len(missing) > 0 {
		return CheckCanary, false, "no canary device of class " + strings.Join(missing, ", "), "bring a device of each class online or raise canary.min_per_class"
	}
	return CheckCanary, true, fmt.Sprintf("%d classes, each in the canary", len(classes)), ""
}

func sortedKeys(m map[string]DeviceHealth) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// deviceNamer names devices by ID from the plan (the ID when the plan does
// not have it), with an index built on first use: naming every device of a
// large fleet stays linear.
func deviceNamer(plan *Plan) func(id string) string {
	var names map[string]string
	return func(id string) string {
		if plan == nil {
			return id
		}
		if names == nil {
			names = map[string]string{}
			for _, st := range plan.Stages {
				for _, d := range st.Devices {
					if _, dup := names[d.ID]; !dup {
						names[d.ID] = d.Name
					}
				}
			}
		}
		if name, ok := names[id]; ok {
			return name
		}
		return id
	}
}

func layerList(ls []int) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, fmt.Sprintf("%d (%s)", l, LayerName(l)))
	}
	return strings.Join(parts, " and ")
}

// countOrNames says "all N <ok>" or names up to five offenders.
func countOrNames(total int, bad []string, ok, what string) string {
	if len(bad) == 0 {
		return fmt.Sprintf("all %d %s", total, ok)
	}
	shown := bad
	if len(shown) > 5 {
		shown = append(append([]string{}, bad[:5]...), fmt.Sprintf("and %d more", len(bad)-5))
	}
	return fmt.Sprintf("%d of %d %s: %s", len(bad), total, what, strings.Join(shown, ", "))
}

// preflight gathers the checklist's evidence and evaluates it.
func (c *Controller) preflight(ctx context.Context, r *Rollout, plan *Plan) Checklist {
	cl := GatherChecklist(ctx, c.Health, c.Policy, plan, nil, c.JobspecErr, r.Active, r.PreviousVersion)
	return append(cl, StrategyChecklist(ctx, c.Policy, plan, c.Cluster)...)
}

// Strategy checklist item names.
const (
	CheckTraffic  = "traffic switch available (blue-green)"
	CheckCapacity = "room for two slots on every device (blue-green)"
)

// StrategyChecklist gathers the strategy's own pre-flight items from the
// cluster (blue-green: a traffic switch, and room on every planned device
// for the standby beside the candidate); none for the other strategies.
func StrategyChecklist(ctx context.Context, p *Policy, plan *Plan, cluster any) Checklist {
	if p == nil || p.Strategy != StrategyBlueGreen {
		return nil
	}
	_, router := cluster.(TrafficRouter)
	var capacity *Capacity
	capErr := errors.New("the cluster does not report node resources")
	if cs, ok := cluster.(CapacitySource); ok && plan != nil {
		capacity, capErr = cs.SlotCapacity(ctx, plannedRefs(plan))
	}
	return BuildStrategyChecklist(p, plan, router, capacity, capErr)
}

// BuildStrategyChecklist evaluates the strategy's items (pure).
func BuildStrategyChecklist(p *Policy, plan *Plan, router bool, capacity *Capacity, capErr error) Checklist {
	if p == nil || p.Strategy != StrategyBlueGreen {
		return nil
	}
	var cl Checklist
	if router {
		cl = append(cl, ChecklistItem{Name: CheckTraffic, OK: true, Detail: "each device's live instance is its entry tagged live in the Consul catalog (live.<service>.service.consul)"})
	} else {
		cl = append(cl, ChecklistItem{Name: CheckTraffic, Detail: "this controller has no traffic switch: blue-green would keep both slots without moving traffic",
			Fix: "run the rollout with fleetplan apply or the controller service (both switch traffic in Consul)"})
	}
	if plan == nil {
		return cl
	}
	if capErr != nil || capacity == nil {
		msg := "node resources could not be read"
		if capErr != nil {
			msg += ": " + capErr.Error()
		}
		return append(cl, ChecklistItem{Name: CheckCapacity, Detail: msg, Fix: "check that the Nomad servers answer, then try again"})
	}
	type tight struct {
		room  Resources
		name  string
		short []string
		n     int
	}
	byClass := map[string]*tight{}
	var classes []string
	for _, st := range plan.Stages {
		for _, d := range st.Devices {
			t := byClass[d.Class]
			if t == nil {
				t = &tight{room: Resources{CPUMHz: int(^uint(0) >> 1), MemoryMB: int(^uint(0) >> 1)}}
				byClass[d.Class] = t
				classes = append(classes, d.Class)
			}
			t.n++
			need := capacity.PerClass[d.Class]
			need = Resources{CPUMHz: 2 * need.CPUMHz, MemoryMB: 2 * need.MemoryMB}
			room, ok := capacity.Room[d.ID]
			switch {
			case !ok:
				t.short = append(t.short, d.Name+" (resources unknown)")
				continue
			case !room.Fits(need):
				t.short = append(t.short, fmt.Sprintf("%s (room %d MHz, %d MB)", d.Name, room.CPUMHz, room.MemoryMB))
			}
			if room.CPUMHz < t.room.CPUMHz || room.CPUMHz == t.room.CPUMHz && room.MemoryMB < t.room.MemoryMB {
				t.room, t.name = room, d.Name
			}
		}
	}
	sort.Strings(classes)
	var parts, short []string
	for _, class := range classes {
		t := byClass[class]
		need := capacity.PerClass[class]
		part := fmt.Sprintf("%s: 2 x %d MHz, %d MB = %d MHz, %d MB per device", class, need.CPUMHz, need.MemoryMB, 2*need.CPUMHz, 2*need.MemoryMB)
		if t.name != "" {
			part += fmt.Sprintf(" (tightest %s: room %d MHz, %d MB)", t.name, t.room.CPUMHz, t.room.MemoryMB)
		}
		if len(t.short) > 0 {
			part += fmt.Sprintf("; %d of %d lack room: %s", len(t.short), t.n, strings.Join(firstN(t.short, 5), ", "))
			short = append(short, class)
		}
		parts = append(parts, part)
	}
	it := ChecklistItem{Name: CheckCapacity, OK: len(short) == 0, Detail: "blue-green runs both slots during the standby window; " + strings.Join(parts, "; ")}
	if !it.OK {
		it.Fix = fmt.Sprintf("free resources on the devices of class %s, or use strategy = \"canary-rolling\" or \"rolling-update\" (one slot at a time)", strings.Join(short, ", "))
	}
	return append(cl, it)
}

func firstN(s []string, n int) []string {
	if len(s) <= n {
		return s
	}
	return append(append([]string{}, s[:n]...), fmt.Sprintf("and %d more", len(s)-n))
}

// plannedRefs are the devices of every stage of a plan.
func plannedRefs(plan *Plan) []DeviceRef {
	var refs []DeviceRef
	for _, st := range plan.Stages {
		for _, d := range st.Devices {
			refs = append(refs, DeviceRef{ID: d.ID, Name: d.Name, Class: d.Class})
		}
	}
	return refs
}

// GatherChecklist reads the checklist's evidence from the health source
// (each online planned device seen from the active slot: the device
// agent's node checks, the old allocation and its checks) and evaluates
// it. Offline devices are not looked at (they are skipped and caught up).
func GatherChecklist(ctx context.Context, hs HealthSource, p *Policy, plan *Plan, regErr, jobspecErr error, active, activeVersion string) Checklist {
	in := PreflightInput{Policy: p, Plan: plan, RegistryErr: regErr, JobspecErr: jobspecErr, Active: active, Health: map[string]DeviceHealth{}}
	if plan == nil || hs == nil {
		if hs == nil {
			in.HealthErr = errors.New("no health source")
		}
		return BuildChecklist(in)
	}
	var refs []DeviceRef
	for _, st := range plan.Stages {
		for _, d := range st.Devices {
			if !d.Offline {
				refs = append(refs, DeviceRef{ID: d.ID, Name: d.Name, Class: d.Class})
			}
		}
	}
	// Seen from the active slot; on a first install from the candidate's
	// (only the device agent's node checks are there yet).
	view := &Rollout{App: p.Name, Active: active, Candidate: active, Version: activeVersion}
	if active == "" {
		view.Candidate = OtherSlot(active)
		view.Version = p.Release.Version
	}
	if len(refs) > 0 {
		h, err := hs.Health(ctx, view, refs)
		in.HealthErr = err
		for id, dh := range h {
			if dh.Online {
				in.Health[id] = dh
			}
		}
	}
	return BuildChecklist(in)
}

// hasAgent reports whether the device agent's node checks are on a device
// (Consul's own serfHealth is layer 1 too, but says nothing of the agent).
func hasAgent(checks []CheckResult) bool {
	for _, ch := range checks {
		if ch.Name == contract.CheckConnectivity || ch.Name == contract.CheckSystem {
			return true
		}
	}
	return false
}
