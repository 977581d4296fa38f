package command

import (
	"context"
	"io"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/report"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// applyJSON is `apply -json`: the progress goes to standard error and the
// final result of every rollout to standard output, as one JSON object:
//
//	{"exit_code": 0, "rollouts": [{"rollout": ..., "exit_code": ..., "run": ..., "outcome": ..., "state": {fleet-deploy-state}}]}
type applyJSON struct {
	c   *cli.Context
	out io.Writer // nil without -json
	doc applyDoc
}

type applyDoc struct {
	ExitCode int               `json:"exit_code"`
	Rollouts []applyRolloutDoc `json:"rollouts"`
}

type applyRolloutDoc struct {
	Rollout  string              `json:"rollout"`
	Version  string              `json:"version"`
	ExitCode int                 `json:"exit_code"`
	Run      string              `json:"run,omitempty"`
	Outcome  string              `json:"outcome,omitempty"`
	State    *report.DeployState `json:"state,omitempty"`
	Error    string              `json:"error,omitempty"`
	// Request is the controller service's request ID when the rollout
	// was submitted to it; Following is false when apply returned before
	// the rollout ended (-detach, q or Ctrl-C).
	Request   string `json:"request,omitempty"`
	Following *bool  `json:"following,omitempty"`
}

// newApplyJSON starts apply's -json output: with -json, everything apply
// prints for people goes to standard error from now on.
func newApplyJSON(c *cli.Context) *applyJSON {
	j := &applyJSON{c: c, doc: applyDoc{Rollouts: []applyRolloutDoc{}}}
	if c.Bool("json") {
		j.out = c.App.Writer
		c.App.Writer = c.App.ErrWriter
	}
	return j
}

// add records the result of one rollout, with its state as stored.
func (j *applyJSON) add(ctx context.Context, op *operator.Operator, p *scheduler.Policy, code int) {
	if j.out == nil {
		return
	}
	d := applyRolloutDoc{Rollout: p.Name, Version: p.Release.Version, ExitCode: code}
	if r, err := op.LoadRun(context.WithoutCancel(ctx), p.Name); err != nil {
		d.Error = err.Error()
	} else if r != nil {
		st := report.NewDeployState(r)
		d.Run, d.Outcome, d.State = r.ID, string(r.Outcome), &st
	}
	j.doc.Rollouts = append(j.doc.Rollouts, d)
	j.doc.ExitCode = max(j.doc.ExitCode, code)
}

// submitted records rollouts submitted to the controller service that
// apply does not follow to their end.
func (j *applyJSON) submitted(reqs []*store.RolloutRequest) {
	if j.out == nil {
		return
	}
	no := false
	for _, r := range reqs {
		j.doc.Rollouts = append(j.doc.Rollouts, applyRolloutDoc{Rollout: r.App, Version: r.Version, Request: r.ID, Following: &no})
	}
}

// print writes the result with -json.
func (j *applyJSON) print() error {
	if j.out == nil {
		return nil
	}
	j.c.App.Writer = j.out
	return printJSON(j.c, j.doc)
}

// detached prints where a detached controller runs, with -json.
func (j *applyJSON) detached(pid int, logPath string) bool {
	if j.out == nil {
		return false
	}
	j.c.App.Writer = j.out
	_ = printJSON(j.c, map[string]any{"detached": true, "pid": pid, "log": logPath})
	return true
}

// childEnv is the environment of a fleetplan started by this one (apply
// -detach): this process's, with the connection flags given on the
// command line as the variables they stand for, so that secrets never go
// into the child's arguments.
func childEnv() []string {
	s := operator.CurrentSettings()
	env := os.Environ()
	add := func(k, v string) {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	add("NOMAD_ADDR", s.NomadAddress)
	add("NOMAD_TOKEN", s.NomadToken)
	add("NOMAD_REGION", s.NomadRegion)
	add("NOMAD_NAMESPACE", s.NomadNamespace)
	add("NOMAD_CACERT", s.NomadCACert)
	add("NOMAD_CLIENT_CERT", s.NomadClientCert)
	add("NOMAD_CLIENT_KEY", s.NomadClientKey)
	add("NOMAD_TLS_SERVER_NAME", s.NomadTLSServerName)
	if s.NomadSkipVerify != nil && *s.NomadSkipVerify {
		add("NOMAD_SKIP_VERIFY", "true")
	}
	add("CONSUL_HTTP_ADDR", s.ConsulAddress)
	add("CONSUL_HTTP_TOKEN", s.ConsulToken)
	add("CONSUL_CACERT", s.ConsulCACert)
	add("CONSUL_CLIENT_CERT", s.ConsulClientCert)
	add("CONSUL_CLIENT_KEY", s.ConsulClientKey)
	if s.ConsulSkipVerify != nil && *s.ConsulSkipVerify {
		add("CONSUL_HTTP_SSL_VERIFY", "false")
	}
	add("FLEETPLAN_KV_PREFIX", s.KVPrefix)
	return env
}
