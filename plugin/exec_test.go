package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// script writes a /bin/sh script and returns the exec probe config that
// runs it.
func script(t *testing.T, body string, extra map[string]string) map[string]string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	args, _ := json.Marshal([]string{path})
	cfg := map[string]string{"command": "/bin/sh", "args": string(args)}
	for k, v := range extra {
		cfg[k] = v
	}
	return cfg
}

func TestExecProbe(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	tests := []struct {
		name   string
		config map[string]string
		status Status
		output string // exact, unless prefix is set
		prefix bool
	}{
		{"exit 0", script(t, "echo 'OK - 3 models loaded'\n", nil), StatusPassing, "OK - 3 models loaded", false},
		{"exit 1", script(t, "echo 'WARNING - queue 80%'; exit 1\n", nil), StatusWarning, "WARNING - queue 80%", false},
		{"exit 2", script(t, "echo 'CRITICAL - no model'; exit 2\n", nil), StatusCritical, "CRITICAL - no model", false},
		{"exit 3", script(t, "exit 3\n", nil), StatusCritical, "exit status 3 in ", true},
		{"stderr is included", script(t, "echo out; echo err >&2; exit 1\n", nil), StatusWarning, "out\nerr", false},
		{
			"target in the environment",
			script(t, `echo "$FLEETPLAN_TARGET_ADDRESS $FLEETPLAN_TARGET_NODE $FLEETPLAN_TARGET_SERVICE"`+"\n", nil),
			StatusPassing, "127.0.0.1:8080 edge-3 infer", false,
		},
		{
			"args",
			map[string]string{"command": "/bin/sh", "args": `["-c", "echo \"$0 $1\"; exit 1", "a b", "c"]`},
			StatusWarning, "a b c", false,
		},
		{"killed by a signal", script(t, "echo dying; kill -9 $$\n", nil), StatusCritical, `"/bin/sh" failed after `, true},
		{"command not found", map[string]string{"command": "/nonexistent/check"}, StatusCritical, `could not run "/nonexistent/check": `, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProbe("exec")
			if err != nil {
				t.Fatal(err)
			}
			configure(t, p, tt.config)
			res, err := p.Probe(context.Background(), Target{Address: "127.0.0.1:8080", Node: "edge-3", Service: "infer"})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status {
				t.Errorf("status = %s, want %s (output %q)", res.Status, tt.status, res.Output)
			}
			if tt.prefix && !strings.HasPrefix(res.Output, tt.output) || !tt.prefix && res.Output != tt.output {
				t.Errorf("output = %q, want %q (prefix %v)", res.Output, tt.output, tt.prefix)
			}
		})
	}
}

func TestExecProbeTruncatesOutput(t *testing.T) {
	p, _ := NewProbe("exec")
	// 10,000 bytes of output, then a warning exit.
	configure(t, p, script(t, "i=0; while [ $i -lt 100 ]; do printf '%099d\\n' $i; i=$((i+1)); done; exit 1\n", nil))
	res, err := p.Probe(context.Background(), Target{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusWarning {
		t.Errorf("status = %s, want warning", res.Status)
	}
	if len(res.Output) > maxExecOutput {
		t.Errorf("output is %d bytes, want at most %d", len(res.Output), maxExecOutput)
	}
	if !strings.HasPrefix(res.Output, strings.Repeat("0", 99)+"\n") || !strings.HasSuffix(res.Output, "(output truncated: 10000 bytes)") {
		t.Errorf("output = %q…%q, want the start of the output and a truncation marker",
			res.Output[:min(120, len(res.Output))], res.Output[max(0, len(res.Output)-60):])
	}
}

func TestExecProbeTimeoutKillsChildren(t *testing.T) {
	p, _ := NewProbe("exec")
	// The script's child (sleep) holds the output pipe: unless the whole
	// process group is killed, Probe waits for the pipe for execWaitDelay.
	configure(t, p, script(t, "echo started; sleep 60; echo never\n", map[string]string{"timeout": "200ms"}))
	start := time.Now()
	res, err := p.Probe(context.Background(), Target{})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= execWaitDelay {
		t.Errorf("Probe took %s: the script's children were not killed at the timeout", took)
	}
	if res.Status != StatusCritical {
		t.Errorf("status = %s, want critical", res.Status)
	}
	if want := "\"/bin/sh\" timed out after 200ms and was killed\nstarted"; res.Output != want {
		t.Errorf("output = %q, want %q", res.Output, want)
	}
}

func TestExecProbeCallerCancelled(t *testing.T) {
	p, _ := NewProbe("exec")
	fifo := filepath.Join(t.TempDir(), "started")
	configure(t, p, script(t, "echo > \""+fifo+"\"; sleep 60\n", nil))
	if err := mkfifo(fifo); err != nil {
		t.Skip("no mkfifo:", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Opening the FIFO blocks until the script has started.
		f, err := os.Open(fifo)
		if err == nil {
			f.Close()
		}
		cancel()
	}()
	if _, err := p.Probe(ctx, Target{}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled: no verdict when the caller gives up", err)
	}
}

func TestExecProbeNotConfigured(t *testing.T) {
	p, _ := NewProbe("exec")
	if _, err := p.Probe(context.Background(), Target{}); !errors.Is(err, errNotConfigured) {
		t.Errorf("err = %v, want errNotConfigured", err)
	}
}
