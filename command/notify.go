package command

import (
	"context"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/notify"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/scheduler"
)

// notifiers are apply's notifiers: for each rollout of the policy, its
// notify blocks and the -notify flags, built by the notify package (which
// the controller service uses too).
type notifiers struct {
	sets map[string]*notify.Set // by rollout
}

// newNotifiers builds the notifiers of every policy, resolving their
// secret references now, in this process: environment variables from
// apply's environment, Nomad Variables with op's Nomad client (op may be
// nil: nomad_var references then fail).
func newNotifiers(ctx context.Context, op *operator.Operator, policies []*scheduler.Policy, flags []string, log hclog.Logger) (*notifiers, error) {
	flagSpecs, err := notify.ParseFlags(flags)
	if err != nil {
		return nil, err
	}
	opts := notify.Options{Logger: log}
	if op != nil && op.Nomad != nil {
		opts.Variables = op.Nomad.Variables()
	}
	n := &notifiers{sets: map[string]*notify.Set{}}
	for _, p := range policies {
		specs := append(append([]scheduler.NotifierSpec(nil), p.Notify...), flagSpecs...)
		if len(specs) == 0 {
			continue
		}
		s, err := notify.New(ctx, specs, opts)
		if err != nil {
			n.Close()
			return nil, err
		}
		n.sets[p.Name] = s
	}
	return n, nil
}

// Event notifies the rollout's notifiers of an event; it never blocks.
func (n *notifiers) Event(ctx context.Context, e scheduler.Event, version string) {
	if n == nil {
		return
	}
	n.sets[e.Rollout].Event(ctx, e, version)
}

// Close delivers what is queued (waiting a bounded time) and stops.
func (n *notifiers) Close() {
	if n == nil {
		return
	}
	for _, s := range n.sets {
		s.Close()
	}
}
