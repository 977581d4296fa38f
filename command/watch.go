package command

import (
	"context"
	"fmt"
	"strings"
	"time"

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

// watchStatus follows a rollout until it finishes, printing its state each
// time it changes.
func watchStatus(c *cli.Context, w *wiring, app string) error {
	var last time.Time
	for {
		r, err := loadRun(c.Context, w, app)
		if err != nil {
			return err
		}
		if !r.UpdatedAt.Equal(last) {
			last = r.UpdatedAt
			fmt.Fprintf(c.App.Writer, "\n--- %s ---\n", time.Now().Format("15:04:05"))
			printStatus(c.App.Writer, r, false)
		}
		if r.Finished() {
			return nil
		}
		select {
		case <-c.Context.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// newRecoveryCluster is the cluster a recovery controller (rollback without
// the policy file) switches devices with.
func newRecoveryCluster(w *wiring, p *scheduler.Policy) scheduler.Cluster {
	return jobs.NewNomad(w.nomad, p, nil, w.log)
}
