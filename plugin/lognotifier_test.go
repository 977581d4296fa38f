package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestLogNotifier(t *testing.T) {
	tests := []struct {
		name      string
		config    map[string]string
		loggerLvl hclog.Level
		wantLevel string // "" when nothing is logged
	}{
		{"default info", nil, hclog.Trace, "info"},
		{"warn", map[string]string{"level": "warn"}, hclog.Trace, "warn"},
		{"level is case-insensitive", map[string]string{"level": "ERROR"}, hclog.Trace, "error"},
		{"below the logger's level", map[string]string{"level": "debug"}, hclog.Info, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := NewNotifier("log")
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			n.(LoggerSetter).SetLogger(hclog.New(&hclog.LoggerOptions{Output: &buf, Level: tt.loggerLvl, JSONFormat: true}))
			configure(t, n, tt.config)
			if err := n.Notify(context.Background(), testNotification); err != nil {
				t.Fatal(err)
			}
			if tt.wantLevel == "" {
				if buf.Len() != 0 {
					t.Errorf("logged %s, want nothing", buf.String())
				}
				return
			}
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("log line %q: %v", buf.String(), err)
			}
			want := map[string]any{
				"@level": tt.wantLevel, "@message": testNotification.Message,
				"kind": "rollback", "rollout": "edgeinfer", "run_id": "r-42", "version": "1.4.0",
				"phase": "canary", "failed_percent": 100.0, "p95_latency_ms": 412.5,
			}
			for k, v := range want {
				if line[k] != v {
					t.Errorf("%s = %v, want %v (line %s)", k, line[k], v, buf.String())
				}
			}
		})
	}
}

func TestLogNotifierMessageDefaultsToKind(t *testing.T) {
	n, _ := NewNotifier("log")
	var buf bytes.Buffer
	n.(LoggerSetter).SetLogger(hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true}))
	if err := n.Notify(context.Background(), Notification{Kind: NotifyApprovalNeeded, Rollout: "x"}); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatal(err)
	}
	if line["@message"] != NotifyApprovalNeeded {
		t.Errorf("message = %v, want %s", line["@message"], NotifyApprovalNeeded)
	}
}
