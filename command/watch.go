package command

import (
	"context"
	"strings"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/urfave/cli/v2"
)

// rolloutNames lists the rollouts that have state in Consul.
func rolloutNames(ctx context.Context, w *wiring) ([]string, error) {
	prefix := w.store.Prefix() + "rollouts/"
	keys, _, err := w.consul.KV().Keys(prefix, "/", nil)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		name := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "/")
		if name != "" {
			out = append(out, name)
		}
	}
	return out, nil
}

// watchStatus follows a rollout until it finishes: the live view in a
// terminal, plain timestamped lines otherwise.
func watchStatus(c *cli.Context, w *wiring, app string) error {
	if _, err := loadRun(c.Context, w, app); err != nil {
		return err
	}
	load := func(ctx context.Context) (*scheduler.Rollout, error) { return w.store.Load(ctx, app) }
	if !isTerminal(c.App.Writer) {
		return plainWatch(c.Context, c.App.Writer, load)
	}
	m := newLiveModel(c.Context, load, nil)
	_, err := tea.NewProgram(m, tea.WithContext(c.Context)).Run()
	if err != nil && c.Context.Err() == nil {
		return exit(ExitInternal, "live view: %v", err)
	}
	return nil
}

// newRecoveryCluster is the cluster a recovery controller (rollback without
// the policy file) switches devices with.
func newRecoveryCluster(w *wiring, p *scheduler.Policy) scheduler.Cluster {
	return jobs.NewNomad(w.nomad, p, nil, w.log)
}
