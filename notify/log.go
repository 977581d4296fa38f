package notify

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-hclog"

	"github.com/fleetplan/fleetplan/scheduler"
)

// logSender writes each notification as one hclog line.
type logSender struct {
	log   hclog.Logger
	level hclog.Level
}

func newLogSender(spec scheduler.NotifierSpec, log hclog.Logger) (*logSender, error) {
	level := hclog.Info
	if spec.Level != "" {
		level = hclog.LevelFromString(spec.Level)
		if level == hclog.NoLevel {
			return nil, fmt.Errorf("level %q is not one of trace, debug, info, warn, error", spec.Level)
		}
	}
	return &logSender{log: log, level: level}, nil
}

func (l *logSender) send(ctx context.Context, n Notification) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	args := []any{"kind", n.Kind, "rollout", n.Rollout, "run_id", n.RunID, "version", n.Version, "phase", n.Phase}
	if n.Stage != "" {
		args = append(args, "stage", n.Stage)
	}
	for _, k := range slices.Sorted(maps.Keys(n.Numbers)) {
		args = append(args, k, n.Numbers[k])
	}
	if n.Analysis != nil {
		args = append(args, "analysis", n.Analysis.Summary)
	}
	l.log.Log(l.level, n.Message, args...)
	return 1, nil
}
