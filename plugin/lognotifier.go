package plugin

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

const logName = "log"

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

var logSchema = []Field{
	{Name: "level", Type: FieldString, Description: "trace, debug, info, warn or error; default info"},
}

// logNotifier writes each Notification to an hclog logger.
type logNotifier struct {
	level atomic.Int32 // an hclog.Level

	mu     sync.Mutex
	logger hclog.Logger
}

func newLogNotifier() *logNotifier {
	n := &logNotifier{}
	n.level.Store(int32(hclog.Info))
	return n
}

func (l *logNotifier) PluginInfo() Info {
	return Info{Name: logName, Type: TypeNotifier, Version: BuiltinVersion}
}

func (l *logNotifier) ConfigSchema() []Field { return slices.Clone(logSchema) }

// SetLogger sets the logger notifications go to (default hclog.Default()).
func (l *logNotifier) SetLogger(logger hclog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logger = logger
}

func (l *logNotifier) SetConfig(_ context.Context, config map[string]string) error {
	v, cp := parseConfig(logName, logSchema, config)
	level := hclog.Info
	if s, ok := v["level"].(string); ok {
		name := strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(logLevels, name) {
			cp.addf("level", s, "not one of %s", strings.Join(logLevels, ", "))
		}
		level = hclog.LevelFromString(name)
	}
	if err := cp.err(); err != nil {
		return err
	}
	l.level.Store(int32(level))
	return nil
}

// Notify logs n at the configured level: the message, then its fields and
// numbers as key/value pairs.
func (l *logNotifier) Notify(ctx context.Context, n Notification) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	logger := l.logger
	l.mu.Unlock()
	if logger == nil {
		logger = hclog.Default()
	}
	msg := n.Message
	if msg == "" {
		msg = n.Kind
	}
	args := []any{"kind", n.Kind, "rollout", n.Rollout, "run_id", n.RunID, "version", n.Version}
	if n.Phase != "" {
		args = append(args, "phase", n.Phase)
	}
	for _, k := range slices.Sorted(maps.Keys(n.Numbers)) {
		args = append(args, k, n.Numbers[k])
	}
	logger.Log(hclog.Level(l.level.Load()), msg, args...)
	return nil
}
