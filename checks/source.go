package checks

import (
	"context"
	"errors"
	"net/http"
	"sort"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/contract"
)

// query is one blocking call's parameters.
type query struct {
	waitIndex uint64
	waitTime  time.Duration
}

// source is the narrow view of Nomad and Consul the watcher follows. Every
// method is one HTTP call (except Job: one list call, plus one versions call
// when the job changed); the results are converted to the small types below
// so that the watcher is tested with a fake.
type source interface {
	// Nodes lists the Nomad nodes.
	Nodes(ctx context.Context, q query) ([]nodeInfo, uint64, error)
	// NodeChecks lists the Consul checks not tied to a service (serfHealth,
	// maintenance, node checks of the device agent) on every node.
	NodeChecks(ctx context.Context, q query) ([]checkInfo, uint64, error)
	// Job reports a job's versions; prev is the last result, returned
	// as is (no versions call) when the job did not change.
	Job(ctx context.Context, jobID string, prev jobView, q query) (jobView, uint64, error)
	// Allocations lists the job's allocations.
	Allocations(ctx context.Context, jobID string, q query) ([]allocInfo, uint64, error)
	// Service lists the instances of a Consul service with a tag ("" for
	// any) and their service checks.
	Service(ctx context.Context, name, tag string, q query) ([]instance, uint64, error)
}

type nodeInfo struct {
	ID, Name, Status string
}

type allocInfo struct {
	ID            string
	NodeID        string
	ClientStatus  string
	DesiredStatus string
	JobVersion    uint64
	Restarts      int
	CreateIndex   uint64
}

// jobView is what the watcher knows of a slot job.
type jobView struct {
	Found bool
	// CreateIndex and JobModifyIndex identify the job's incarnation and
	// its latest version; a change of either triggers a versions call.
	CreateIndex    uint64
	JobModifyIndex uint64
	// Latest is the newest job version.
	Latest uint64
	// Versions maps a job version to its meta fleetplan_version (for the
	// versions Nomad still tracks).
	Versions map[uint64]string
	// Services are the Consul service names over all tracked versions.
	Services []string
}

type checkInfo struct {
	Node      string
	CheckID   string
	Name      string
	Status    string
	Output    string
	ServiceID string
}

// instance is one service instance on one node, with its service checks.
type instance struct {
	Node      string
	ServiceID string
	Checks    []checkInfo
}

// apiSource is source on the real clients.
type apiSource struct {
	nomad  *nomadapi.Client
	consul *consulapi.Client
}

func (s apiSource) nq(ctx context.Context, q query) *nomadapi.QueryOptions {
	return (&nomadapi.QueryOptions{WaitIndex: q.waitIndex, WaitTime: q.waitTime}).WithContext(ctx)
}

func (s apiSource) cq(ctx context.Context, q query) *consulapi.QueryOptions {
	return (&consulapi.QueryOptions{WaitIndex: q.waitIndex, WaitTime: q.waitTime}).WithContext(ctx)
}

func (s apiSource) Nodes(ctx context.Context, q query) ([]nodeInfo, uint64, error) {
	nodes, meta, err := s.nomad.Nodes().List(s.nq(ctx, q))
	if err != nil {
		return nil, 0, err
	}
	out := make([]nodeInfo, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, nodeInfo{ID: n.ID, Name: n.Name, Status: n.Status})
	}
	return out, meta.LastIndex, nil
}

func (s apiSource) NodeChecks(ctx context.Context, q query) ([]checkInfo, uint64, error) {
	opts := s.cq(ctx, q)
	opts.Filter = `ServiceID == ""`
	hcs, meta, err := s.consul.Health().State(consulapi.HealthAny, opts)
	if err != nil {
		return nil, 0, err
	}
	out := make([]checkInfo, 0, len(hcs))
	for _, c := range hcs {
		out = append(out, convertCheck(c))
	}
	return out, meta.LastIndex, nil
}

func (s apiSource) Job(ctx context.Context, jobID string, prev jobView, q query) (jobView, uint64, error) {
	opts := s.nq(ctx, q)
	opts.Prefix = jobID
	stubs, meta, err := s.nomad.Jobs().List(opts)
	if err != nil {
		return prev, 0, err
	}
	var stub *nomadapi.JobListStub
	for _, st := range stubs {
		if st.ID == jobID {
			stub = st
		}
	}
	if stub == nil {
		return jobView{}, meta.LastIndex, nil
	}
	if prev.Found && prev.CreateIndex == stub.CreateIndex && prev.JobModifyIndex == stub.JobModifyIndex {
		return prev, meta.LastIndex, nil
	}
	versions, _, _, err := s.nomad.Jobs().Versions(jobID, false, s.nq(ctx, query{}))
	if isNotFound(err) {
		// Purged between the two calls: the next list says so.
		return jobView{}, meta.LastIndex, nil
	}
	if err != nil {
		return prev, 0, err
	}
	v := viewOfVersions(versions)
	v.CreateIndex, v.JobModifyIndex = stub.CreateIndex, stub.JobModifyIndex
	return v, meta.LastIndex, nil
}

func (s apiSource) Allocations(ctx context.Context, jobID string, q query) ([]allocInfo, uint64, error) {
	allocs, meta, err := s.nomad.Jobs().Allocations(jobID, false, s.nq(ctx, q))
	if err != nil {
		return nil, 0, err
	}
	out := make([]allocInfo, 0, len(allocs))
	for _, a := range allocs {
		ai := allocInfo{
			ID:            a.ID,
			NodeID:        a.NodeID,
			ClientStatus:  a.ClientStatus,
			DesiredStatus: a.DesiredStatus,
			JobVersion:    a.JobVersion,
			CreateIndex:   a.CreateIndex,
		}
		for _, ts := range a.TaskStates {
			if ts != nil {
				ai.Restarts += int(ts.Restarts)
			}
		}
		out = append(out, ai)
	}
	return out, meta.LastIndex, nil
}

func (s apiSource) Service(ctx context.Context, name, tag string, q query) ([]instance, uint64, error) {
	entries, meta, err := s.consul.Health().Service(name, tag, false, s.cq(ctx, q))
	if err != nil {
		return nil, 0, err
	}
	out := make([]instance, 0, len(entries))
	for _, e := range entries {
		if e.Node == nil || e.Service == nil {
			continue
		}
		in := instance{Node: e.Node.Node, ServiceID: e.Service.ID}
		for _, c := range e.Checks {
			// The node's own checks come from NodeChecks.
			if c.ServiceID == "" {
				continue
			}
			in.Checks = append(in.Checks, convertCheck(c))
		}
		out = append(out, in)
	}
	return out, meta.LastIndex, nil
}

func convertCheck(c *consulapi.HealthCheck) checkInfo {
	return checkInfo{Node: c.Node, CheckID: c.CheckID, Name: c.Name, Status: c.Status, Output: c.Output, ServiceID: c.ServiceID}
}

// isNotFound reports a Nomad 404.
func isNotFound(err error) bool {
	var ure nomadapi.UnexpectedResponseError
	if errors.As(err, &ure) {
		return ure.StatusCode() == http.StatusNotFound
	}
	var pure *nomadapi.UnexpectedResponseError
	if errors.As(err, &pure) {
		return pure.StatusCode() == http.StatusNotFound
	}
	return false
}

// viewOfVersions reads the fleetplan_version meta of every version and the
// Consul service names of the job's groups and tasks.
func viewOfVersions(versions []*nomadapi.Job) jobView {
	v := jobView{Found: len(versions) > 0, Versions: map[uint64]string{}}
	names := map[string]bool{}
	for _, j := range versions {
		if j == nil {
			continue
		}
		var ver uint64
		if j.Version != nil {
			ver = *j.Version
		}
		if ver >= v.Latest {
			v.Latest = ver
		}
		v.Versions[ver] = j.Meta[contract.MetaVersion]
		jobName := deref(j.Name)
		if jobName == "" {
			jobName = deref(j.ID)
		}
		for _, tg := range j.TaskGroups {
			if tg == nil {
				continue
			}
			group := deref(tg.Name)
			for _, svc := range tg.Services {
				addService(names, svc, jobName, group, "")
			}
			for _, t := range tg.Tasks {
				if t == nil {
					continue
				}
				for _, svc := range t.Services {
					addService(names, svc, jobName, group, t.Name)
				}
			}
		}
	}
	for n := range names {
		v.Services = append(v.Services, n)
	}
	sort.Strings(v.Services)
	return v
}

func addService(names map[string]bool, svc *nomadapi.Service, job, group, task string) {
	if svc == nil || (svc.Provider != "" && svc.Provider != "consul") {
		return
	}
	name := svc.Name
	if name == "" {
		// Nomad's default service name.
		name = job + "-" + group
		if task != "" {
			name += "-" + task
		}
	}
	name = interpolateServiceName(name, job, group, task)
	if name != "" && !strings.Contains(name, "${") {
		names[name] = true
	}
}

// interpolateServiceName resolves the runtime variables Nomad allows in
// service names; a name with any other variable is left out (it cannot be
// followed without the node's environment).
func interpolateServiceName(name, job, group, task string) string {
	base := job + "-" + group
	if task != "" {
		base += "-" + task
	}
	r := strings.NewReplacer(
		"${JOB}", job, "${NOMAD_JOB_NAME}", job, "${NOMAD_JOB_ID}", job,
		"${TASKGROUP}", group, "${NOMAD_GROUP_NAME}", group,
		"${TASK}", task, "${NOMAD_TASK_NAME}", task,
		"${BASE}", base,
	)
	return r.Replace(name)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
