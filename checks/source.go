package checks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
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
// so that the watcher is tested with a fake. Three of them are blocking
// queries (Nodes, Checks, Allocations): the watcher keeps exactly one of
// each open, whatever the fleet size and the number of slot jobs it
// follows. Job is an ordinary read, made when the allocations name a job
// version the watcher has not seen.
type source interface {
	// Nodes lists the Nomad nodes.
	Nodes(ctx context.Context, q query) ([]nodeInfo, uint64, error)
	// Checks lists the Consul checks the filter expression selects
	// (/v1/health/state/any?filter=...): the node-level checks fleetplan
	// uses and the checks of the followed services.
	Checks(ctx context.Context, filter string, q query) ([]checkInfo, uint64, error)
	// Job reports a job's versions; prev is the last result, returned
	// as is (no versions call) when the job did not change. It does not
	// block.
	Job(ctx context.Context, jobID string, prev jobView) (jobView, error)
	// Allocations lists the allocations of the jobs (one call, filtered
	// on the job IDs).
	Allocations(ctx context.Context, jobIDs []string, q query) ([]allocInfo, uint64, error)

	// GetKV reads one Consul KV key: its value and ModifyIndex, found
	// false when it does not exist.
	GetKV(ctx context.Context, key string) (value []byte, index uint64, found bool, err error)
	// CASKV writes a key if it was not modified since index; ok false
	// when it was.
	CASKV(ctx context.Context, key string, value []byte, index uint64) (ok bool, err error)
	// ListKV lists the keys under a prefix with their values (a blocking
	// query).
	ListKV(ctx context.Context, prefix string, q query) ([]kvPair, uint64, error)
}

// kvPair is one Consul KV entry.
type kvPair struct {
	Key   string
	Value []byte
}

type nodeInfo struct {
	ID, Name, Status string
}

type allocInfo struct {
	ID            string
	JobID         string
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

// checkInfo is a Consul check as the watcher reads it. The checks query's
// answer is decoded straight into these fields (the JSON names of
// /v1/health/state): a check's definition, type, notes and other fields
// are skipped, not decoded into consulapi.HealthCheck and copied.
type checkInfo struct {
	Node        string   `json:"Node"`
	CheckID     string   `json:"CheckID"`
	Name        string   `json:"Name"`
	Status      string   `json:"Status"`
	Output      string   `json:"Output"`
	ServiceID   string   `json:"ServiceID"`
	ServiceName string   `json:"ServiceName"`
	ServiceTags []string `json:"ServiceTags"`
	// ModifyIndex is the Raft index of the check's last change: a check
	// whose ModifyIndex is not above the previous answer's index did not
	// change since (see checkCache.merge).
	ModifyIndex uint64 `json:"ModifyIndex"`
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

func (s apiSource) Checks(ctx context.Context, filter string, q query) ([]checkInfo, uint64, error) {
	opts := s.cq(ctx, q)
	opts.Filter = filter
	// Health().State's request, decoded into checkInfo (see there).
	var out []checkInfo
	meta, err := s.consul.Raw().Query("/v1/health/state/"+consulapi.HealthAny, &out, opts)
	if err != nil {
		return nil, 0, err
	}
	return out, meta.LastIndex, nil
}

func (s apiSource) Job(ctx context.Context, jobID string, prev jobView) (jobView, error) {
	opts := s.nq(ctx, query{})
	opts.Prefix = jobID
	stubs, _, err := s.nomad.Jobs().List(opts)
	if err != nil {
		return prev, err
	}
	var stub *nomadapi.JobListStub
	for _, st := range stubs {
		if st.ID == jobID {
			stub = st
		}
	}
	if stub == nil {
		return jobView{}, nil
	}
	if prev.Found && prev.CreateIndex == stub.CreateIndex && prev.JobModifyIndex == stub.JobModifyIndex {
		return prev, nil
	}
	versions, _, _, err := s.nomad.Jobs().Versions(jobID, false, s.nq(ctx, query{}))
	if isNotFound(err) {
		// Purged between the two calls: the next list says so.
		return jobView{}, nil
	}
	if err != nil {
		return prev, err
	}
	v := viewOfVersions(versions)
	v.CreateIndex, v.JobModifyIndex = stub.CreateIndex, stub.JobModifyIndex
	return v, nil
}

// allocFilter selects the allocations of the jobs.
func allocFilter(jobIDs []string) string {
	parts := make([]string, 0, len(jobIDs))
	for _, id := range jobIDs {
		parts = append(parts, "JobID == "+strconv.Quote(id))
	}
	return strings.Join(parts, " or ")
}

func (s apiSource) Allocations(ctx context.Context, jobIDs []string, q query) ([]allocInfo, uint64, error) {
	opts := s.nq(ctx, q)
	opts.Filter = allocFilter(jobIDs)
	allocs, meta, err := s.nomad.Allocations().List(opts)
	if err != nil {
		return nil, 0, err
	}
	out := make([]allocInfo, 0, len(allocs))
	for _, a := range allocs {
		ai := allocInfo{
			ID:            a.ID,
			JobID:         a.JobID,
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

func (s apiSource) GetKV(ctx context.Context, key string) ([]byte, uint64, bool, error) {
	p, _, err := s.consul.KV().Get(key, s.cq(ctx, query{}))
	if err != nil || p == nil {
		return nil, 0, false, err
	}
	return p.Value, p.ModifyIndex, true, nil
}

func (s apiSource) CASKV(ctx context.Context, key string, value []byte, index uint64) (bool, error) {
	ok, _, err := s.consul.KV().CAS(&consulapi.KVPair{Key: key, Value: value, ModifyIndex: index}, (&consulapi.WriteOptions{}).WithContext(ctx))
	return ok, err
}

func (s apiSource) ListKV(ctx context.Context, prefix string, q query) ([]kvPair, uint64, error) {
	ps, meta, err := s.consul.KV().List(prefix, s.cq(ctx, q))
	if err != nil {
		return nil, 0, err
	}
	out := make([]kvPair, 0, len(ps))
	for _, p := range ps {
		out = append(out, kvPair{Key: p.Key, Value: p.Value})
	}
	return out, meta.LastIndex, nil
}

// checkFilter is the Consul filter expression of the checks the watcher
// follows: the node-level checks fleetplan reads (serfHealth, node
// maintenance, the device agent's "fleetplan L<n>" checks), the layer
// checks of the agent services, and every check of the slot services
// (service name and slot tag). Checks of other services and other node
// checks are left on the servers.
func checkFilter(agent []string, services []slotService) string {
	node := fmt.Sprintf(`(ServiceID == "" and (CheckID == %s or CheckID == %s or Name matches %s))`,
		strconv.Quote(contract.SerfHealthCheck), strconv.Quote(nodeMaintenanceCheck), strconv.Quote("^"+regexp.QuoteMeta(contract.LayerCheckPrefix)))
	parts := []string{node}
	for _, a := range agent {
		parts = append(parts, fmt.Sprintf(`(ServiceName == %s and Name matches %s)`, strconv.Quote(a), strconv.Quote("^"+regexp.QuoteMeta(contract.LayerCheckPrefix))))
	}
	for _, s := range services {
		parts = append(parts, fmt.Sprintf(`(ServiceName == %s and %s in ServiceTags)`, strconv.Quote(s.name), strconv.Quote(s.tag)))
	}
	return strings.Join(parts, " or ")
}

// nodeMaintenanceCheck is the check Consul registers on a node in
// maintenance mode.
const nodeMaintenanceCheck = "_node_maintenance"

// slotService is a followed service: its name and the slot's tag.
type slotService struct{ name, tag string }

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
