//go:build integration

package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	consul "github.com/hashicorp/consul/api"
	nomad "github.com/hashicorp/nomad/api"
)

// Invariant names, as Violation.Invariant reports them.
const (
	// InvPlacement: every online fleet device runs exactly one running
	// allocation of each slot its metadata names (two during a blue-green
	// standby, none without a slot) and none of any other slot.
	InvPlacement = "placement"
	// InvVersion: every running allocation serves (edgeinfer's /health)
	// the version its slot job's meta names.
	InvVersion = "version"
	// InvGate: every allocation of this run's candidate job on a device
	// was preceded by a switch (or catch-up) intent for that device in the
	// run's audit trail.
	InvGate = "gate"
	// InvRollback: after a rolled-back outcome, every fleet device is on
	// the old slot, runs it, serves the old version and its checks pass.
	InvRollback = "rollback"
	// InvAudit: the run is finished and every intent of its audit trail has
	// an outcome.
	InvAudit = "audit"
	// InvRead: the ground truth could not be read.
	InvRead = "read"
)

// Violation is one broken invariant.
type Violation struct {
	Invariant string
	Device    string
	Detail    string
}

func (v Violation) String() string {
	if v.Device == "" {
		return v.Invariant + ": " + v.Detail
	}
	return fmt.Sprintf("%s: %s: %s", v.Invariant, v.Device, v.Detail)
}

// runState is the part of fleetplan/rollouts/<app>/state the checker reads.
type runState struct {
	ID              string    `json:"id"`
	Version         string    `json:"version"`
	PreviousVersion string    `json:"previous_version"`
	Active          string    `json:"active"`
	Candidate       string    `json:"candidate"`
	Phase           string    `json:"phase"`
	Step            string    `json:"step"`
	Paused          bool      `json:"paused"`
	Halt            *struct{} `json:"halt"`
	Outcome         string    `json:"outcome"`
	StartedAt       time.Time `json:"started_at"`
	Approval        *struct{} `json:"approval"`
	RollbackReason  string    `json:"rollback_reason"`
}

// auditRecord is one record of an audit chunk (fleetplan/audit/<app>/<seq>,
// a JSON array).
type auditRecord struct {
	Time    time.Time `json:"time"`
	Run     string    `json:"run"`
	Actor   string    `json:"actor"`
	Phase   string    `json:"phase"`
	Device  string    `json:"device"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail"`
}

// readState returns the app's current run (nil when there is none).
func readState(ctx context.Context, cc *consul.Client, app string) (*runState, error) {
	pair, _, err := cc.KV().Get("fleetplan/rollouts/"+app+"/state", (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil || pair == nil {
		return nil, err
	}
	var st runState
	if err := json.Unmarshal(pair.Value, &st); err != nil {
		return nil, fmt.Errorf("decoding the state of %s: %w", app, err)
	}
	return &st, nil
}

// readAudit returns the records of one run of the app's audit trail,
// oldest first.
func readAudit(ctx context.Context, cc *consul.Client, app, run string) ([]auditRecord, error) {
	pairs, _, err := cc.KV().List("fleetplan/audit/"+app+"/", (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, err
	}
	var out []auditRecord
	for _, p := range pairs {
		var recs []auditRecord
		if err := json.Unmarshal(p.Value, &recs); err != nil {
			return nil, fmt.Errorf("audit chunk %s: %w", p.Key, err)
		}
		for _, r := range recs {
			if r.Run == run {
				out = append(out, r)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

// normVersion drops a leading v and semver build metadata.
func normVersion(v string) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	return v
}

// slotJob is what the checker knows of one slot job.
type slotJob struct {
	stopped  bool
	versions map[uint64]string // job version -> meta fleetplan_version
	allocs   []*nomad.AllocationListStub
}

func readSlotJob(ctx context.Context, nc *nomad.Client, id string) (*slotJob, error) {
	q := (&nomad.QueryOptions{}).WithContext(ctx)
	sj := &slotJob{versions: map[uint64]string{}}
	jobs, _, _, err := nc.Jobs().Versions(id, false, q)
	if err != nil {
		if strings.Contains(err.Error(), "404") {
			return sj, nil
		}
		return nil, fmt.Errorf("versions of job %s: %w", id, err)
	}
	for i, j := range jobs {
		if j.Version != nil {
			sj.versions[*j.Version] = j.Meta["fleetplan_version"]
		}
		if i == 0 && j.Stop != nil {
			sj.stopped = *j.Stop
		}
	}
	sj.allocs, _, err = nc.Jobs().Allocations(id, true, q)
	if err != nil {
		return nil, fmt.Errorf("allocations of job %s: %w", id, err)
	}
	return sj, nil
}

func running(a *nomad.AllocationListStub) bool {
	return a.DesiredStatus == "run" && a.ClientStatus == "running"
}

// Check reads the ground truth of app from Nomad and Consul and returns
// every invariant it breaks. It is meant for a settled cluster (after a
// trial); CheckSettled retries while allocations converge.
func Check(ctx context.Context, nc *nomad.Client, cc *consul.Client, app string) []Violation {
	var out []Violation
	add := func(inv, dev, format string, args ...any) {
		out = append(out, Violation{Invariant: inv, Device: dev, Detail: fmt.Sprintf(format, args...)})
	}
	st, err := readState(ctx, cc, app)
	if err != nil || st == nil {
		add(InvRead, "", "state of %s: %v (nil: %t)", app, err, st == nil)
		return out
	}
	jobs := map[string]*slotJob{}
	for _, slot := range []string{"blue", "green"} {
		sj, err := readSlotJob(ctx, nc, app+"-"+slot)
		if err != nil {
			add(InvRead, "", "%v", err)
			return out
		}
		jobs[slot] = sj
	}
	nodes, _, err := nc.Nodes().List((&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		add(InvRead, "", "nodes: %v", err)
		return out
	}
	metaKey := "fleetplan." + app + ".slot"
	for _, stub := range nodes {
		if stub.Status != "ready" {
			continue // offline devices are skipped, never judged
		}
		node, _, err := nc.Nodes().Info(stub.ID, (&nomad.QueryOptions{}).WithContext(ctx))
		if err != nil {
			add(InvRead, stub.Name, "node info: %v", err)
			continue
		}
		meta, hasMeta := node.Meta[metaKey]
		want := map[string]bool{}
		for _, s := range strings.Split(meta, ",") {
			if s = strings.TrimSpace(s); s != "" {
				want[s] = true
			}
		}
		runningBySlot := map[string][]*nomad.AllocationListStub{}
		for slot, sj := range jobs {
			for _, a := range sj.allocs {
				if a.NodeID == stub.ID && running(a) {
					runningBySlot[slot] = append(runningBySlot[slot], a)
				}
			}
		}
		for slot, sj := range jobs {
			n := len(runningBySlot[slot])
			switch {
			case want[slot] && n != 1:
				detail := ""
				if sj.stopped {
					detail = " (the slot job is stopped)"
				}
				add(InvPlacement, stub.Name, "metadata names slot %s but %d running allocations of %s-%s%s", slot, n, app, slot, detail)
			case !want[slot] && n > 0:
				add(InvPlacement, stub.Name, "metadata %q but %d running allocations of %s-%s", meta, n, app, slot)
			}
			for _, a := range runningBySlot[slot] {
				wantV := normVersion(sj.versions[a.JobVersion])
				got, status, err := served(ctx, nc, a.ID)
				switch {
				case err != nil:
					add(InvVersion, stub.Name, "allocation %s of %s-%s does not answer: %v", short(a.ID), app, slot, err)
				case normVersion(got) != wantV:
					add(InvVersion, stub.Name, "allocation %s of %s-%s serves %q, its job meta says %q", short(a.ID), app, slot, got, wantV)
				case st.Outcome == "rolled-back" && hasMeta && slot == st.Active && status != "healthy":
					add(InvRollback, stub.Name, "rolled back to slot %s but it answers %q", slot, status)
				}
			}
		}
		if st.Outcome == "rolled-back" && hasMeta && st.Active != "" {
			checkRolledBack(ctx, cc, st, app, stub.Name, meta, runningBySlot[st.Active], add)
		}
	}
	checkGate(ctx, cc, st, app, jobs[st.Candidate], add)
	return out
}

// checkRolledBack: a rolled-back device is on the old slot, running it with
// every check of its instance passing.
func checkRolledBack(ctx context.Context, cc *consul.Client, st *runState, app, device, meta string, allocs []*nomad.AllocationListStub, add func(string, string, string, ...any)) {
	if meta != st.Active {
		add(InvRollback, device, "outcome rolled-back but its metadata names %q, not the old slot %s", meta, st.Active)
		return
	}
	if len(allocs) != 1 {
		return // reported as a placement violation
	}
	checks, _, err := cc.Health().Node(device, (&consul.QueryOptions{}).WithContext(ctx))
	if err != nil {
		add(InvRead, device, "consul checks: %v", err)
		return
	}
	n := 0
	for _, ch := range checks {
		if ch.ServiceID == "" || !strings.Contains(ch.ServiceID, allocs[0].ID) {
			continue
		}
		n++
		if ch.Status != consul.HealthPassing {
			add(InvRollback, device, "rolled back, but check %q of %s-%s is %s: %s", ch.Name, app, st.Active, ch.Status, firstLine(ch.Output))
		}
	}
	if n == 0 {
		add(InvRollback, device, "rolled back, but the instance of %s-%s has no Consul check", app, st.Active)
	}
}

// checkGate: every candidate allocation of this run was preceded by a
// switch intent for its device; the audit trail has an outcome for every
// intent; the run is finished.
func checkGate(ctx context.Context, cc *consul.Client, st *runState, app string, cand *slotJob, add func(string, string, string, ...any)) {
	recs, err := readAudit(ctx, cc, app, st.ID)
	if err != nil {
		add(InvRead, "", "audit of run %s: %v", st.ID, err)
		return
	}
	if st.Outcome == "" {
		add(InvAudit, "", "run %s is not finished (phase %s step %s paused %t halted %t)", st.ID, st.Phase, st.Step, st.Paused, st.Halt != nil)
	}
	type key struct{ device, action string }
	open := map[key]auditRecord{}
	intents := map[string][]time.Time{}
	for _, r := range recs {
		k := key{r.Device, r.Action}
		if r.Outcome == "intent" {
			open[k] = r
			if r.Action == "switch" || r.Action == "catch-up" {
				intents[r.Device] = append(intents[r.Device], r.Time)
			}
			continue
		}
		delete(open, k)
	}
	for k, r := range open {
		add(InvAudit, k.device, "intent %q at %s has no outcome: %s", k.action, r.Time.Format("15:04:05.000"), r.Detail)
	}
	if cand == nil {
		return
	}
	for _, a := range cand.allocs {
		created := time.Unix(0, a.CreateTime)
		if created.Before(st.StartedAt) || normVersion(cand.versions[a.JobVersion]) != normVersion(st.Version) {
			continue // an earlier run's allocation
		}
		ok := false
		for _, at := range intents[a.NodeName] {
			ok = ok || !at.After(created)
		}
		if !ok {
			add(InvGate, a.NodeName, "allocation %s of %s-%s (%s, created %s, %s) without a switch intent before it",
				short(a.ID), app, st.Candidate, st.Version, created.Format("15:04:05.000"), a.ClientStatus)
		}
	}
}

// served asks an allocation's /health for its version and status.
func served(ctx context.Context, nc *nomad.Client, allocID string) (version, status string, err error) {
	a, _, err := nc.Allocations().Info(allocID, (&nomad.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", "", err
	}
	addr := ""
	if a.AllocatedResources != nil {
		for _, n := range a.AllocatedResources.Shared.Networks {
			for _, p := range n.DynamicPorts {
				if p.Label == "http" {
					addr = fmt.Sprintf("%s:%d", n.IP, p.Value)
				}
			}
		}
		for _, p := range a.AllocatedResources.Shared.Ports {
			if p.Label == "http" && addr == "" {
				addr = fmt.Sprintf("%s:%d", p.HostIP, p.Value)
			}
		}
	}
	if addr == "" {
		return "", "", fmt.Errorf("no http port")
	}
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, "http://"+addr+"/health", nil)
	if err != nil {
		return "", "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var h struct{ Status, Version string }
	if err := json.Unmarshal(body, &h); err != nil {
		return "", "", fmt.Errorf("/health answered %d %q", resp.StatusCode, firstLine(string(body)))
	}
	return h.Version, h.Status, nil
}

// CheckSettled runs Check until it finds nothing or timeout passes, and
// returns the last violations (allocations and checks converge for a few
// seconds after a rollout ends or a device returns).
func CheckSettled(ctx context.Context, nc *nomad.Client, cc *consul.Client, app string, timeout time.Duration) []Violation {
	deadline := time.Now().Add(timeout)
	for {
		v := Check(ctx, nc, cc, app)
		if len(v) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return v
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
