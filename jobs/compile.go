package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
	"github.com/fleetplan/fleetplan/scheduler"
)

const (
	// attrNodeClass and attrDatacenter are the node attributes of the class
	// and datacenter constraints.
	attrNodeClass  = "${node.class}"
	attrDatacenter = "${node.datacenter}"

	// minCheckDuration is the shortest check interval and timeout Nomad
	// accepts.
	minCheckDuration = time.Second
)

// slotConstraintTarget is the constraint attribute of contract.SlotMetaKey.
func slotConstraintTarget(app string) string { return "${meta." + contract.SlotMetaKey(app) + "}" }

// Compile turns the application's parsed jobspec into the system job of one
// slot for one rollout run. It does not modify base and does no I/O, so the
// same inputs always give the same job.
//
// The compiled job:
//   - is named <app>-<slot>, of type system (one allocation per device), with
//     the fields system jobs reject (count > 1, scaling, reschedule, migrate,
//     affinities, spreads) dropped;
//   - is constrained to nodes whose metadata fleetplan.<app>.slot contains
//     the slot (set_contains, so "blue,green" runs both during a blue-green
//     rollout), and to the fleet selector where it translates into
//     constraints (see selectorConstraints);
//   - runs in the policy's datacenters when the policy names them;
//   - adds release.env to every task's env, and for each `variant "<class>"`
//     adds a copy of every task group, named <group>-<class>, constrained to
//     that class and with the variant's env on top, while the original group
//     is constrained away from the variant classes: every device gets
//     exactly one allocation of each group;
//   - carries job meta fleetplan_version (exactly the policy's version,
//     invariant I4: an application may report NOMAD_META_fleetplan_version
//     verbatim), fleetplan_rollout (the run ID), fleetplan_slot and
//     fleetplan_app;
//   - tags every service with fleetplan-slot=<slot> and
//     fleetplan-version=<version> (meta fleetplan_slot, fleetplan_version,
//     fleetplan_rollout), and
//     puts the layer 3 Consul HTTP check on the service of the health port in
//     every group that declares that port, adding a service named after the
//     application when the group has none.
//
// The jobspec's restart policy, update block, resources and everything else
// are kept as written.
func Compile(base *api.Job, p *scheduler.Policy, slot, rolloutID string) (*api.Job, error) {
	if base == nil {
		return nil, errors.New("compiling the slot job: no jobspec")
	}
	if p == nil || p.Name == "" {
		return nil, errors.New("compiling the slot job: the policy has no rollout name")
	}
	if slot != scheduler.SlotBlue && slot != scheduler.SlotGreen {
		return nil, fmt.Errorf("compiling the %s slot job: slot %q is neither %q nor %q", p.Name, slot, scheduler.SlotBlue, scheduler.SlotGreen)
	}
	version := p.Release.Version
	switch {
	case version == "":
		return nil, fmt.Errorf("compiling %s: the release has no version", contract.SlotJobID(p.Name, slot))
	case strings.Contains(version, "+"):
		return nil, fmt.Errorf("compiling %s: release version %q contains \"+\": semver build metadata, which the version contract ignores when it compares a reported version with the release's (scheduler.SameVersion), so releases that differ only there could not be told apart; give the release a version without it", contract.SlotJobID(p.Name, slot), version)
	}
	what := fmt.Sprintf("compiling %s from job %q", contract.SlotJobID(p.Name, slot), deref(base.ID))
	if app := p.Health.Application; app.Interval < minCheckDuration || app.Timeout < minCheckDuration {
		return nil, fmt.Errorf("%s: the application health check's interval (%s) and timeout (%s) must be at least %s, Nomad's minimum", what, app.Interval, app.Timeout, minCheckDuration)
	}

	job, err := copyJob(base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if len(job.TaskGroups) == 0 {
		return nil, fmt.Errorf("%s: the job has no task group", what)
	}
	if job.Periodic != nil || job.ParameterizedJob != nil {
		return nil, fmt.Errorf("%s: periodic and parameterized jobs cannot run as system jobs", what)
	}
	port := healthPort(job, p)
	if port == "" {
		return nil, fmt.Errorf("%s: the policy names no health port and the job has no service with a port", what)
	}
	if !slices.ContainsFunc(job.TaskGroups, func(g *api.TaskGroup) bool { return hasPort(g, port) }) {
		return nil, fmt.Errorf("%s: no group's network declares the health port %q (ports: %s)", what, port, strings.Join(portLabels(job), ", "))
	}

	// Identity and type. Fields the server sets are cleared so that a job
	// read back from Nomad compiles to the same result.
	id := contract.SlotJobID(p.Name, slot)
	job.ID, job.Name = new(id), new(id)
	job.Type = new(api.JobTypeSystem)
	job.ParentID, job.Status, job.StatusDescription = nil, nil, nil
	job.Stable, job.Version, job.SubmitTime, job.Stop = nil, nil, nil, nil
	job.CreateIndex, job.ModifyIndex, job.JobModifyIndex, job.VersionTag = nil, nil, nil, nil
	if len(p.Fleet.Datacenters) > 0 {
		job.Datacenters = slices.Clone(p.Fleet.Datacenters)
	}

	// What system jobs do not accept.
	job.Affinities, job.Spreads, job.Reschedule, job.Migrate = nil, nil, nil, nil

	constraints := []*api.Constraint{api.NewConstraint(slotConstraintTarget(p.Name), api.ConstraintSetContains, slot)}
	constraints = append(constraints, selectorConstraints(p.Fleet.Selector)...)
	job.Constraints = append(constraints, job.Constraints...)

	if job.Meta == nil {
		job.Meta = map[string]string{}
	}
	// I4: the version is the policy's, exactly; the run has its own key.
	job.Meta[contract.MetaVersion] = version
	job.Meta[contract.MetaRollout] = rolloutID
	job.Meta[contract.MetaSlot] = slot
	job.Meta[contract.MetaApp] = p.Name

	names := map[string]bool{}
	for _, g := range job.TaskGroups {
		if g.Name == nil || *g.Name == "" {
			return nil, fmt.Errorf("%s: a task group has no name", what)
		}
		names[*g.Name] = true
		if g.Count == nil || *g.Count != 1 {
			g.Count = new(1)
		}
		g.Scaling, g.ReschedulePolicy, g.Migrate = nil, nil, nil
		g.Affinities, g.Spreads = nil, nil
		for _, t := range g.Tasks {
			t.Affinities = nil
			t.Env = mergeEnv(t.Env, p.Release.Env)
		}
		decorateServices(g, p, port, slot, version, rolloutID)
	}

	classes := slices.Sorted(maps.Keys(p.Release.Variants))
	if len(classes) > 0 {
		groups := make([]*api.TaskGroup, 0, len(job.TaskGroups)*(len(classes)+1))
		for _, g := range job.TaskGroups {
			variants := make([]*api.TaskGroup, 0, len(classes))
			for _, class := range classes {
				name := *g.Name + "-" + class
				if names[name] {
					return nil, fmt.Errorf("%s: the variant of group %q for class %q would be named %q, which the job already uses", what, *g.Name, class, name)
				}
				names[name] = true
				v, err := copyGroup(g)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", what, err)
				}
				v.Name = new(name)
				v.Constraints = append(v.Constraints, api.NewConstraint(attrNodeClass, "=", class))
				for _, t := range v.Tasks {
					t.Env = mergeEnv(t.Env, p.Release.Variants[class].Env)
				}
				variants = append(variants, v)
			}
			// The original group runs on every class without a variant.
			for _, class := range classes {
				g.Constraints = append(g.Constraints, api.NewConstraint(attrNodeClass, "!=", class))
			}
			groups = append(groups, g)
			groups = append(groups, variants...)
		}
		job.TaskGroups = groups
	}
	return job, nil
}

// healthPort is the port label of the layer 3 check: the policy's, or else
// the first service's.
func healthPort(job *api.Job, p *scheduler.Policy) string {
	if p.Health.Application.Port != "" {
		return p.Health.Application.Port
	}
	for _, g := range job.TaskGroups {
		for _, s := range allServices(g) {
			if s.PortLabel != "" {
				return s.PortLabel
			}
		}
	}
	return ""
}

// decorateServices tags the group's services with the slot and version and
// puts the layer 3 check on the service of the health port.
func decorateServices(g *api.TaskGroup, p *scheduler.Policy, port, slot, version, rolloutID string) {
	if hasPort(g, port) {
		services := allServices(g)
		var target *api.Service
		for _, s := range services {
			if s.PortLabel == port {
				target = s
				break
			}
		}
		if target == nil && len(services) > 0 {
			target = services[0]
		}
		if target == nil {
			target = &api.Service{Name: p.Name, PortLabel: port, Provider: api.ServiceProviderConsul}
			g.Services = append(g.Services, target)
		}
		app := p.Health.Application
		check := api.ServiceCheck{
			Name:      contract.CheckApplication,
			Type:      "http",
			Path:      app.Path,
			PortLabel: port,
			Interval:  app.Interval,
			Timeout:   app.Timeout,
			// Not Consul's default critical: a first result that is
			// critical too would be no status change, and its output
			// would reach the servers only check_update_interval later.
			// The gate reads a warning without output as "not run yet".
			InitialStatus: "warning",
		}
		target.Checks = slices.DeleteFunc(target.Checks, func(c api.ServiceCheck) bool { return c.Name == contract.CheckApplication })
		target.Checks = append(target.Checks, check)
	}
	for _, s := range allServices(g) {
		s.Tags = slices.DeleteFunc(s.Tags, func(t string) bool {
			return strings.HasPrefix(t, contract.TagSlot) || strings.HasPrefix(t, contract.TagVersion)
		})
		s.Tags = append(s.Tags, contract.SlotTag(slot), contract.VersionTag(version))
		if s.Meta == nil {
			s.Meta = map[string]string{}
		}
		s.Meta[contract.MetaSlot] = slot
		s.Meta[contract.MetaVersion] = version
		if rolloutID != "" {
			s.Meta[contract.MetaRollout] = rolloutID
		}
	}
}

// allServices lists a group's group-level services, then its tasks'.
func allServices(g *api.TaskGroup) []*api.Service {
	out := slices.Clone(g.Services)
	for _, t := range g.Tasks {
		out = append(out, t.Services...)
	}
	return out
}

// hasPort reports whether the group (or one of its tasks, in the old
// task-level network block) declares the port label.
func hasPort(g *api.TaskGroup, label string) bool {
	return slices.Contains(groupPorts(g), label)
}

func groupPorts(g *api.TaskGroup) []string {
	var out []string
	add := func(nets []*api.NetworkResource) {
		for _, n := range nets {
			if n == nil {
				continue
			}
			for _, pt := range n.ReservedPorts {
				out = append(out, pt.Label)
			}
			for _, pt := range n.DynamicPorts {
				out = append(out, pt.Label)
			}
		}
	}
	add(g.Networks)
	for _, t := range g.Tasks {
		if t.Resources != nil {
			add(t.Resources.Networks)
		}
	}
	return out
}

func portLabels(job *api.Job) []string {
	var out []string
	for _, g := range job.TaskGroups {
		for _, l := range groupPorts(g) {
			if !slices.Contains(out, l) {
				out = append(out, l)
			}
		}
	}
	if len(out) == 0 {
		return []string{"none"}
	}
	return out
}

// mergeEnv returns env with over on top (a new map; nil when both are empty).
func mergeEnv(env, over map[string]string) map[string]string {
	if len(over) == 0 {
		return env
	}
	out := make(map[string]string, len(env)+len(over))
	maps.Copy(out, env)
	maps.Copy(out, over)
	return out
}

// copyJob deep-copies a job through JSON, the form the Nomad API exchanges.
func copyJob(j *api.Job) (*api.Job, error) {
	var out api.Job
	if err := roundTrip(j, &out); err != nil {
		return nil, fmt.Errorf("copying the job: %w", err)
	}
	return &out, nil
}

func copyGroup(g *api.TaskGroup) (*api.TaskGroup, error) {
	var out api.TaskGroup
	if err := roundTrip(g, &out); err != nil {
		return nil, fmt.Errorf("copying group %q: %w", deref(g.Name), err)
	}
	return &out, nil
}

func roundTrip(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
