package scheduler

import (
	"sync"
	"time"
)

// Event is one thing the controller did or decided. Events with Outcome
// "intent" are emitted before an action, the others after it.
type Event struct {
	Time    time.Time `json:"time"`
	Rollout string    `json:"rollout"`
	RunID   string    `json:"run_id"`
	Phase   Phase     `json:"phase"`
	Stage   string    `json:"stage,omitempty"`
	Device  string    `json:"device,omitempty"`
	Actor   string    `json:"actor,omitempty"`
	Action  string    `json:"action"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	// Decision is set on "decision:<kind>" events.
	Decision *Decision `json:"decision,omitempty"`
}

// eventSink delivers events to OnEvent one at a time, in order, on a lock
// of its own: a slow audit write or terminal delays only the goroutine that
// emits, never the controller's other state (its requests, its workers'
// bookkeeping).
type eventSink struct {
	mu sync.Mutex
}

func (s *eventSink) deliver(f func(Event), e Event) {
	if f == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f(e)
}

// decide records a decision and emits it.
func (c *Controller) decide(r *Rollout, kind DecisionKind, reason string, numbers map[string]float64) *Decision {
	return c.record(r, Decision{Kind: kind, Reason: reason, Numbers: numbers})
}

// record stamps a decision with the time and position, keeps it on the run
// and emits it.
func (c *Controller) record(r *Rollout, d Decision) *Decision {
	d.Time, d.Phase = c.Clock.Now(), r.Phase
	if r.Phase == PhaseCanary || r.Phase == PhaseWave {
		if r.Stage < len(r.Stages) {
			d.Stage = r.Stages[r.Stage].Name
		}
	}
	r.Decisions = append(r.Decisions, d)
	r.LastAction = string(d.Kind) + ": " + d.Reason
	c.Logger.Named("controller").Info("decision", "rollout", r.App, "kind", d.Kind, "reason", d.Reason)
	c.emitEvent(r, Event{Action: "decision:" + string(d.Kind), Outcome: "ok", Detail: d.Reason, Decision: &r.Decisions[len(r.Decisions)-1]})
	return &r.Decisions[len(r.Decisions)-1]
}

func (c *Controller) emit(r *Rollout, device, action, outcome, detail string) {
	c.emitEvent(r, Event{Device: device, Action: action, Outcome: outcome, Detail: detail})
}

func (c *Controller) emitEvent(r *Rollout, e Event) {
	if c.OnEvent == nil {
		return
	}
	e.Time, e.Rollout, e.RunID, e.Phase, e.Actor = c.Clock.Now(), r.App, r.ID, r.Phase, c.Actor
	if (r.Phase == PhaseCanary || r.Phase == PhaseWave || r.Phase == PhaseRollingBack) && r.Stage < len(r.Stages) {
		e.Stage = r.Stages[r.Stage].Name
	}
	if e.Decision != nil {
		d := *e.Decision // a copy: the run's slice may grow
		e.Decision = &d
	}
	c.events.deliver(c.OnEvent, e)
}

func (c *Controller) emitDevice(r *Rollout, rec *DeviceRecord, action, outcome, detail string) {
	c.Logger.Named("controller").Debug("device", "rollout", r.App, "device", rec.Name, "action", action, "outcome", outcome, "detail", detail)
	c.emit(r, rec.Name, action, outcome, detail)
}
