// Package controller is fleetplan's controller service (`fleetplan
// controller`): a long-running process, run as a Nomad service job, that
// carries out every rollout submitted to it (a request in Consul KV, see
// store.RolloutRequest) from submission to the end, and catches returning
// devices up after a run finished.
//
// One instance leads (a Consul session lock on <root>controller/leader);
// the others wait on that lock. The leader runs each rollout under that
// rollout's own lock, taken with the same session, so that an `apply` run
// in-process and the service never both run one rollout, and so that the
// leader's locks are lost together. The leader writes a heartbeat after
// each renewal of its session; a standby that sees it stay still for a
// whole TTL destroys the leader's session (Reaper), so that a dead or
// frozen leader is replaced within about TTL plus the lock delay. Before every Nomad action and state
// write a fence checks, synchronously, that the session is still held (its
// local lease, then a consistent read of the keys): a leader that was
// frozen past its TTL acts no more when it runs again.
package controller

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// Roles of an instance.
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"
)

// Config configures the service.
type Config struct {
	// Operator holds the Nomad and Consul clients and the store (its
	// session TTL and lock delay are the service's).
	Operator *operator.Operator
	// Name names this instance in the locks it holds and in the audit
	// trail (default: host pid N, or the Nomad allocation).
	Name string
	// ScanInterval is how often the leader lists the requests (default 2s).
	ScanInterval time.Duration
	// CatchUpInterval is how often the leader looks for devices to catch up
	// in finished rollouts (default 30s).
	CatchUpInterval time.Duration
	// ShutdownTimeout bounds how long a stopping leader waits for its
	// rollouts to stop before it gives its locks back (default 20s).
	ShutdownTimeout time.Duration
	// Notify, when set, is told about every event of every rollout the
	// service runs instead of the policy's notifiers (tests); by default
	// each run notifies through the notify blocks of its policy.
	Notify func(ctx context.Context, e scheduler.Event, version string)
	// Namespace is the Nomad namespace the service's clients work in (""
	// is default): it runs the requests of that namespace only.
	Namespace string
	// Metrics (default: new ones).
	Metrics *Metrics
	Logger  hclog.Logger
}

// Service is the controller service.
type Service struct {
	cfg Config
	op  *operator.Operator
	st  *store.Consul
	log hclog.Logger
	m   *Metrics

	mu       sync.Mutex
	role     string
	leader   string
	rollouts map[string]*RolloutInfo
}

// RolloutInfo is what /v1/health says about a rollout the leader follows.
type RolloutInfo struct {
	Rollout string `json:"rollout"`
	Version string `json:"version"`
	Request string `json:"request"`
	// State is the request's state (accepted, halted, finished, failed).
	State   string `json:"state"`
	Phase   string `json:"phase,omitempty"`
	RunID   string `json:"run_id,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Running: this instance holds the rollout's lock and runs it.
	Running bool `json:"running"`
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 2 * time.Second
	}
	if cfg.CatchUpInterval <= 0 {
		cfg.CatchUpInterval = 30 * time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 20 * time.Second
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Service{
		cfg:      cfg,
		op:       cfg.Operator,
		st:       cfg.Operator.Store,
		log:      cfg.Logger.Named("controller").With("instance", cfg.Name),
		m:        cfg.Metrics,
		role:     RoleStandby,
		rollouts: map[string]*RolloutInfo{},
	}
}

// DefaultName names this instance: "fleetplan-controller <alloc>" on Nomad,
// else "fleetplan-controller host pid N".
func DefaultName() string {
	if id := os.Getenv("NOMAD_ALLOC_ID"); len(id) >= 8 {
		host, _ := os.Hostname()
		return fmt.Sprintf("fleetplan-controller alloc %s on %s pid %d", id[:8], host, os.Getpid())
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("fleetplan-controller %s pid %d", host, os.Getpid())
}

// Name is the instance's name.
func (s *Service) Name() string { return s.cfg.Name }

// Metrics are the service's metrics.
func (s *Service) Metrics() *Metrics { return s.m }

// Role returns this instance's role and the leader's name ("" unknown).
func (s *Service) Role() (role, leader string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.role, s.leader
}

// Rollouts returns what the leader knows of the rollouts it follows.
func (s *Service) Rollouts() []RolloutInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]RolloutInfo, 0, len(s.rollouts))
	for _, r := range s.rollouts {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Rollout < out[j].Rollout })
	return out
}

func (s *Service) setRole(role string) {
	s.mu.Lock()
	s.role = role
	if role == RoleLeader {
		s.leader = s.cfg.Name
	} else {
		s.rollouts = map[string]*RolloutInfo{}
	}
	s.mu.Unlock()
	s.m.SetLeader(role == RoleLeader)
}

func (s *Service) info(app string, f func(*RolloutInfo)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.rollouts[app]
	if i == nil {
		i = &RolloutInfo{Rollout: app}
		s.rollouts[app] = i
	}
	f(i)
}

// Run runs the service until ctx ends: it waits for the leadership, leads
// until it loses it, and waits again. On return every lock it held is given
// back (released, so a standby takes over at once).
func (s *Service) Run(ctx context.Context) error {
	failures := 0
	for ctx.Err() == nil {
		err := s.campaign(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			s.m.APIError("consul")
			wait := blocking.Backoff(failures, time.Second, 30*time.Second)
			s.log.Warn("leadership attempt failed; trying again", "error", err, "wait", wait)
			if blocking.Sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		failures = 0
	}
	return nil
}

// campaign waits for the leadership lock and leads while it holds it.
func (s *Service) campaign(ctx context.Context) error {
	sess, err := s.st.NewSession(ctx, "fleetplan controller service ("+s.cfg.Name+")")
	if err != nil {
		return err
	}
	defer sess.Destroy()
	s.log.Info("standing by for the leadership", "key", s.st.Layout().Leader())
	wctx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watchLeader(wctx, sess)
	}()
	lease, err := s.st.AcquireLeader(ctx, sess, s.cfg.Name, true)
	stopWatch()
	<-watched
	if err != nil {
		return fmt.Errorf("waiting for the controller leadership: %w", err)
	}
	// Release before the session is destroyed: no lock delay for the
	// standby.
	defer lease.Release()
	s.log.Info("leading", "session", sess.ID())
	s.setRole(RoleLeader)
	defer s.setRole(RoleStandby)
	hctx, stopHeartbeat := context.WithCancel(ctx)
	heartbeat := make(chan struct{})
	go func() {
		defer close(heartbeat)
		s.st.Heartbeat(hctx, lease, s.cfg.Name)
	}()
	defer func() {
		stopHeartbeat()
		<-heartbeat
	}()
	s.lead(ctx, lease)
	return nil
}

// lead runs the rollouts while the leadership lease holds.
func (s *Service) lead(ctx context.Context, lease *store.Lease) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lease.Lost():
			s.log.Error("lost the controller leadership; stopping every rollout (a standby resumes them)")
			cancel()
		case <-lctx.Done():
		}
	}()
	var wg sync.WaitGroup
	runners := map[string]bool{}
	done := make(chan string, 16)
	for lctx.Err() == nil {
		reqs, bad, err := s.st.Requests(lctx)
		if err != nil {
			if lctx.Err() != nil {
				break
			}
			s.m.APIError("consul")
			s.log.Warn("listing the rollout requests", "error", err)
		}
		for app, err := range bad {
			s.log.Error("a rollout request cannot be read; submit it again", "rollout", app, "error", err)
		}
		for app := range reqs {
			if runners[app] {
				continue
			}
			runners[app] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.runRollout(lctx, lease, app)
				select {
				case done <- app:
				case <-lctx.Done():
				}
			}()
		}
		timer := time.NewTimer(s.cfg.ScanInterval)
	wait:
		for {
			select {
			case <-lctx.Done():
				timer.Stop()
				break wait
			case app := <-done:
				delete(runners, app)
			case <-timer.C:
				break wait
			}
		}
	}
	// Stopping: the runners end with lctx; wait for them, bounded (a
	// straggler is fenced anyway once the locks are released).
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(s.cfg.ShutdownTimeout):
		s.log.Warn("some rollouts did not stop in time; releasing the locks anyway (their fence stops them)", "timeout", s.cfg.ShutdownTimeout)
	}
}
