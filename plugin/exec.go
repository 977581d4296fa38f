package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	execName = "exec"
	// maxExecOutput bounds an exec probe's output, as Consul bounds a
	// script check's.
	maxExecOutput = 4 << 10
	// execWaitDelay bounds how long Probe waits for the output pipes after
	// the command exited or was killed.
	execWaitDelay = time.Second
)

// Environment variables an exec probe's command receives.
const (
	EnvTargetAddress = "FLEETPLAN_TARGET_ADDRESS"
	EnvTargetNode    = "FLEETPLAN_TARGET_NODE"
	EnvTargetService = "FLEETPLAN_TARGET_SERVICE"
)

// MaxExecCommandNameLen bounds an exec command name (ValidExecCommandName).
const MaxExecCommandNameLen = 64

var execCommandNameRe = regexp.MustCompile(`^[a-zA-Z0-9_.-]+$`)

// ValidExecCommandName says whether name can name an exec command in a
// policy: 1 to MaxExecCommandNameLen letters, digits, ".", "_" or "-", and
// not "." or "..". A policy never gives the program itself: the name
// travels through Consul KV, and the device agent maps it to a program of
// its own local allow-list; a command line taken from KV is never run.
func ValidExecCommandName(name string) bool {
	return len(name) <= MaxExecCommandNameLen && execCommandNameRe.MatchString(name) &&
		name != "." && name != ".."
}

var execSchema = []Field{
	{Name: "command", Type: FieldString, Required: true, Description: "the program to run, a path or a name on PATH; no shell"},
	{Name: "args", Type: FieldStringList, Description: `its arguments, a JSON list, e.g. ["-c", "check.sh"]`},
	{Name: "timeout", Type: FieldDuration, Description: "killed and critical after this, default 30s"},
}

type execConfig struct {
	command string
	args    []string
	timeout time.Duration
}

// execProbe runs a command with the Nagios/Consul convention: exit 0
// passing, 1 warning, anything else critical.
type execProbe struct {
	cfg atomic.Pointer[execConfig]
	now func() time.Time
}

func newExecProbe() *execProbe { return &execProbe{now: time.Now} }

func (p *execProbe) PluginInfo() Info {
	return Info{Name: execName, Type: TypeProbe, Version: BuiltinVersion}
}

func (p *execProbe) ConfigSchema() []Field { return slices.Clone(execSchema) }

func (p *execProbe) SetConfig(_ context.Context, config map[string]string) error {
	v, cp := parseConfig(execName, execSchema, config)
	if err := cp.err(); err != nil {
		return err
	}
	p.cfg.Store(&execConfig{
		command: v.str("command", ""),
		args:    v.list("args"),
		timeout: v.duration("timeout", 30*time.Second),
	})
	return nil
}

// Probe runs the command. Its output is the command's combined stdout and
// stderr, at most 4 KiB. A command that cannot start, times out or dies
// from a signal is critical; an error means no verdict (not configured, or
// the caller's context ended).
func (p *execProbe) Probe(ctx context.Context, target Target) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	c := p.cfg.Load()
	if c == nil {
		return Result{}, fmt.Errorf("exec probe: %w", errNotConfigured)
	}
	cctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, c.command, c.args...)
	cmd.Env = append(os.Environ(),
		EnvTargetAddress+"="+target.Address,
		EnvTargetNode+"="+target.Node,
		EnvTargetService+"="+target.Service,
	)
	var out cappedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = execWaitDelay
	setProcessGroup(cmd)

	start := p.now()
	if err := cmd.Start(); err != nil {
		return Result{
			Status: StatusCritical,
			Output: fmt.Sprintf("could not run %q: %v", c.command, err),
		}, nil
	}
	err := cmd.Wait()
	latency := p.now().Sub(start)
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}

	res := Result{Latency: latency}
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	var note string
	switch {
	case cctx.Err() != nil:
		res.Status = StatusCritical
		note = fmt.Sprintf("%q timed out after %s and was killed", c.command, fmtDuration(c.timeout))
	case err != nil && !errors.Is(err, exec.ErrWaitDelay) && code == -1:
		res.Status = StatusCritical
		note = fmt.Sprintf("%q failed after %s: %v", c.command, fmtDuration(latency), err)
	case code == 0:
		res.Status = StatusPassing
	case code == 1:
		res.Status = StatusWarning
	default:
		res.Status = StatusCritical
	}
	res.Output = out.text(note, code, latency)
	return res, nil
}

// cappedBuffer keeps the first maxExecOutput bytes written to it.
type cappedBuffer struct {
	mu    sync.Mutex
	buf   []byte
	total int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.total += len(p)
	if room := maxExecOutput - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// text is the probe output: the command's output (or, when it printed
// nothing, its exit status and run time), after a note when there is one,
// cut to maxExecOutput bytes with a marker when the output was longer.
func (b *cappedBuffer) text(note string, code int, latency time.Duration) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	body := strings.TrimRight(string(b.buf), "\n")
	if strings.TrimSpace(body) == "" {
		body = ""
	}
	s := body
	switch {
	case note != "" && body != "":
		s = note + "\n" + body
	case note != "":
		s = note
	case body == "":
		s = fmt.Sprintf("exit status %d in %s, no output", code, fmtDuration(latency))
	}
	if b.total > len(b.buf) || len(s) > maxExecOutput {
		marker := fmt.Sprintf("\n… (output truncated: %d bytes)", b.total)
		s = truncateUTF8(s, maxExecOutput-len(marker)) + marker
	}
	return s
}
