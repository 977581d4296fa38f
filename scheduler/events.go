package scheduler

import (
	"context"
	"fmt"
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
	c.emitEvents(r, []Event{e})
}

// emitEvents records outcome events in the audit trail in one write, then
// delivers them to OnEvent in order.
func (c *Controller) emitEvents(r *Rollout, es []Event) {
	if len(es) == 0 {
		return
	}
	for i := range es {
		c.stamp(r, &es[i])
	}
	if c.Audit != nil {
		outcomes := make([]Event, 0, len(es))
		for _, e := range es {
			if e.Outcome != "intent" { // intents have their own path (intent)
				outcomes = append(outcomes, e)
			}
		}
		if len(outcomes) > 0 {
			// Outcomes are recorded best effort (a few tries): the action
			// is done, and its intent is already in the trail.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var err error
			for try := 0; try < 3; try++ {
				if err = c.Audit(ctx, outcomes...); err == nil {
					break
				}
			}
			cancel()
			if err != nil {
				c.Logger.Named("controller").Warn("could not record outcomes in the audit trail", "rollout", r.App, "events", len(outcomes), "action", outcomes[0].Action, "device", outcomes[0].Device, "error", err)
			}
		}
	}
	for _, e := range es {
		c.events.deliver(c.OnEvent, e)
	}
}

// intent records an action's intent before the action (I9: a device action
// does not run without its intent record). An intent that cannot be
// recorded is retried like a control-plane error, then pauses the rollout.
func (c *Controller) intent(ctx context.Context, r *Rollout, device, action, detail string) error {
	e := Event{Device: device, Action: action, Outcome: "intent", Detail: detail}
	c.stamp(r, &e)
	if c.Audit != nil {
		err := c.clusterCall(ctx, fmt.Sprintf("recording the intent %s %s in the audit trail", action, device), func() error {
			if err := c.Audit(ctx, e); err != nil {
				return fmt.Errorf("%w: %v", ErrControlPlane, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	c.Logger.Named("controller").Debug("intent", "rollout", r.App, "device", device, "action", action, "detail", detail)
	c.events.deliver(c.OnEvent, e)
	return nil
}

// stamp fills in an event's time, run and position.
func (c *Controller) stamp(r *Rollout, e *Event) {
	e.Time, e.Rollout, e.RunID, e.Phase, e.Actor = c.Clock.Now(), r.App, r.ID, r.Phase, c.Actor
	if (r.Phase == PhaseCanary || r.Phase == PhaseWave || r.Phase == PhaseRollingBack) && r.Stage < len(r.Stages) {
		e.Stage = r.Stages[r.Stage].Name
	}
	if e.Decision != nil {
		d := *e.Decision // a copy: the run's slice may grow
		e.Decision = &d
	}
}

func (c *Controller) emitDevice(r *Rollout, rec *DeviceRecord, action, outcome, detail string) {
	c.emitEvent(r, c.deviceEvent(r, rec, action, outcome, detail))
}

// deviceEvent logs a device's event and returns it, for emitEvents: the
// outcomes of one health reading are written to the audit trail together.
func (c *Controller) deviceEvent(r *Rollout, rec *DeviceRecord, action, outcome, detail string) Event {
	c.Logger.Named("controller").Debug("device", "rollout", r.App, "device", rec.Name, "action", action, "outcome", outcome, "detail", detail)
	return Event{Device: rec.Name, Action: action, Outcome: outcome, Detail: detail}
}
