package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// RolloutRequest is a rollout submitted to the controller service
// (`fleetplan apply` with a service running): everything the service needs
// to run it without the operator's files. It holds no secret: the policy
// and the files it names are the operator's sources, and a notifier's
// secret is named there, never given.
type RolloutRequest struct {
	// ID names the request (q<UTC time>-<random>); apply prints it.
	ID string `json:"id"`
	// App is the rollout (the policy's label); Version its release.
	App     string `json:"app"`
	Version string `json:"version"`
	// Namespace is the Nomad namespace apply worked in ("" or "default":
	// the default namespace); outside it App carries the namespace too
	// (app.namespace). A controller service runs only the requests of its
	// own namespace.
	Namespace string `json:"namespace,omitempty"`
	// PolicyFile is the policy's absolute path where it was submitted (for
	// diagnostics and the run's record), Policy its HCL source.
	PolicyFile string `json:"policy_file"`
	Policy     string `json:"policy"`
	// Files are the files the policy names (the release's jobspec, a
	// probe's input_file), by their absolute path where submitted.
	Files []RequestFile `json:"files"`

	// The options of apply.
	AutoApprove    bool      `json:"auto_approve"`
	SampleInterval Duration  `json:"sample_interval"`
	Actor          string    `json:"actor"`
	SubmittedAt    time.Time `json:"submitted_at"`

	// Status is written by the controller service.
	Status *RequestStatus `json:"status,omitempty"`

	// Index is the key's modify index (check-and-set).
	Index uint64 `json:"-"`
}

// RequestFile is one file a policy names.
type RequestFile struct {
	Path   string `json:"path"`
	Source string `json:"source"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration time.Duration

// MarshalJSON writes "2s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "2s" (or nanoseconds).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("a duration must be a string such as \"2s\": %s", b)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Request states, as the controller service records them.
const (
	// RequestAccepted: the service took it and runs the rollout (RunID
	// names the run once it started).
	RequestAccepted = "accepted"
	// RequestHalted: the run halted and waits for an operator (resume or
	// rollback); the service goes on once the halt is cleared.
	RequestHalted = "halted"
	// RequestFinished: the run is done or rolled back (Outcome).
	RequestFinished = "finished"
	// RequestFailed: the request could not be run (Reason): a policy that
	// does not parse, another version in progress... It is not retried;
	// fix it and apply again.
	RequestFailed = "failed"
)

// RequestStatus is where the controller service is with a request.
type RequestStatus struct {
	State      string    `json:"state"`
	RunID      string    `json:"run_id,omitempty"`
	Outcome    string    `json:"outcome,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	Controller string    `json:"controller,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Terminal reports whether the service is done with the request.
func (s *RequestStatus) Terminal() bool {
	return s != nil && (s.State == RequestFinished || s.State == RequestFailed)
}

// Check refuses a request that is not complete. It says what is missing.
func (r *RolloutRequest) Check() error {
	var errs []error
	if r.ID == "" {
		errs = append(errs, errors.New("it has no ID"))
	}
	if err := checkName("rollout name", r.App); err != nil {
		errs = append(errs, err)
	}
	if r.Policy == "" {
		errs = append(errs, errors.New("it holds no policy source"))
	}
	if r.PolicyFile == "" {
		errs = append(errs, errors.New("it names no policy file"))
	}
	for _, f := range r.Files {
		if f.Path == "" {
			errs = append(errs, errors.New("a file it holds has no path"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("rollout request %s of %q is not valid: %w", r.ID, r.App, err)
	}
	return nil
}

// LoadRequest returns the rollout request of app, or nil when there is none.
func (c *Consul) LoadRequest(ctx context.Context, app string) (*RolloutRequest, error) {
	if err := checkName("rollout name", app); err != nil {
		return nil, err
	}
	key := c.layout.Request(app)
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return nil, fmt.Errorf("reading %s from Consul: %w", key, err)
	}
	if pair == nil {
		return nil, nil
	}
	return decodeRequest(pair)
}

func decodeRequest(pair *api.KVPair) (*RolloutRequest, error) {
	r := new(RolloutRequest)
	if err := json.Unmarshal(pair.Value, r); err != nil {
		return nil, fmt.Errorf("decoding the rollout request %s: %w", pair.Key, err)
	}
	r.Index = pair.ModifyIndex
	return r, nil
}

// Requests returns the rollout request of every rollout that has one, by
// rollout. A request that cannot be decoded is returned in bad (rollout ->
// error) rather than failing the others.
func (c *Consul) Requests(ctx context.Context) (reqs map[string]*RolloutRequest, bad map[string]error, err error) {
	apps, err := c.Rollouts(ctx)
	if err != nil {
		return nil, nil, err
	}
	reqs, bad = map[string]*RolloutRequest{}, map[string]error{}
	for _, app := range apps {
		if checkName("rollout name", app) != nil {
			continue
		}
		pair, _, err := c.kv.Get(c.layout.Request(app), c.query(ctx))
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s from Consul: %w", c.layout.Request(app), err)
		}
		if pair == nil {
			continue
		}
		r, err := decodeRequest(pair)
		if err != nil {
			bad[app] = err
			continue
		}
		reqs[app] = r
	}
	return reqs, bad, nil
}

// SubmitRequest writes a rollout request with check-and-set on r.Index (0:
// there must be none; apply reads the current one first) and sets r.Index.
func (c *Consul) SubmitRequest(ctx context.Context, r *RolloutRequest) error {
	if err := r.Check(); err != nil {
		return err
	}
	r.Status = nil
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the rollout request of %s: %w", r.App, err)
	}
	idx, err := c.cas(ctx, c.layout.Request(r.App), data, r.Index)
	if err != nil {
		return fmt.Errorf("submitting the rollout request of %s: %w", r.App, err)
	}
	r.Index = idx
	return nil
}

// SaveRequestStatus writes r (its Status) with check-and-set on r.Index,
// bound to the rollout's lock when this process holds it (a controller
// that lost its lock writes nothing), and sets r.Index.
func (c *Consul) SaveRequestStatus(ctx context.Context, r *RolloutRequest) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the rollout request of %s: %w", r.App, err)
	}
	idx, err := c.casBound(ctx, r.App, c.layout.Request(r.App), data, r.Index)
	if err != nil {
		return fmt.Errorf("recording the status of rollout request %s of %s: %w", r.ID, r.App, err)
	}
	r.Index = idx
	return nil
}

// Leader returns the holder of the controller service's leadership lock,
// or "" when no session holds it.
func (c *Consul) Leader(ctx context.Context) (holder string, since time.Time, err error) {
	key := c.layout.Leader()
	pair, _, err := c.kv.Get(key, c.query(ctx))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("reading %s from Consul: %w", key, err)
	}
	if pair == nil || pair.Session == "" {
		return "", time.Time{}, nil
	}
	var v lockValue
	_ = json.Unmarshal(pair.Value, &v)
	if v.Holder == "" {
		v.Holder = "session " + pair.Session
	}
	return v.Holder, v.Since, nil
}

// AcquireLeader acquires the controller service's leadership lock with the
// session s (waiting for it with wait).
func (c *Consul) AcquireLeader(ctx context.Context, s *Session, holder string, wait bool) (*Lease, error) {
	return c.Acquire(ctx, s, c.layout.Leader(), holder, wait)
}

// WaitChange blocks until the rollout's request or state changes after
// index (the larger of their modify indexes, from a previous call; 0
// returns at once), or wait passes, and returns the new index. It is one
// blocking query on the rollout's folder, keys only.
func (c *Consul) WaitChange(ctx context.Context, app string, index uint64, wait time.Duration) (uint64, error) {
	if err := checkName("rollout name", app); err != nil {
		return 0, err
	}
	// The request and state keys are watched through the folder's keys
	// (without the device records): ".../<app>/" with separator "/".
	prefix := c.layout.Rollout(app)
	_, meta, err := c.kv.Keys(prefix, "/", (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("watching %s in Consul: %w", prefix, err)
	}
	return meta.LastIndex, nil
}
