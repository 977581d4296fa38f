package plugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"time"
)

const tcpName = "tcp"

var tcpSchema = []Field{
	{Name: "timeout", Type: FieldDuration, Description: "connect timeout, default 5s"},
}

type tcpConfig struct {
	timeout time.Duration
}

// tcpProbe checks that the target accepts a TCP connection.
type tcpProbe struct {
	cfg atomic.Pointer[tcpConfig]
	now func() time.Time
}

func newTCPProbe() *tcpProbe {
	p := &tcpProbe{now: time.Now}
	p.cfg.Store(&tcpConfig{timeout: 5 * time.Second})
	return p
}

func (p *tcpProbe) PluginInfo() Info {
	return Info{Name: tcpName, Type: TypeProbe, Version: BuiltinVersion}
}

func (p *tcpProbe) ConfigSchema() []Field { return slices.Clone(tcpSchema) }

func (p *tcpProbe) SetConfig(_ context.Context, config map[string]string) error {
	v, cp := parseConfig(tcpName, tcpSchema, config)
	if err := cp.err(); err != nil {
		return err
	}
	p.cfg.Store(&tcpConfig{timeout: v.duration("timeout", 5*time.Second)})
	return nil
}

// Probe connects to the target and closes the connection. A refused or
// timed-out connection is a critical Result; an error means no verdict
// (the caller's context ended, or the target has no address).
func (p *tcpProbe) Probe(ctx context.Context, target Target) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if target.Address == "" {
		return Result{}, errors.New("tcp probe: target has no address")
	}
	c := p.cfg.Load()
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var d net.Dialer
	start := p.now()
	conn, err := d.DialContext(dctx, "tcp", target.Address)
	latency := p.now().Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, ctx.Err()
		}
		out := fmt.Sprintf("connect to %s failed after %s: %v", target.Address, fmtDuration(latency), err)
		if errors.Is(err, context.DeadlineExceeded) {
			out = fmt.Sprintf("connect to %s: no connection within the timeout of %s", target.Address, fmtDuration(c.timeout))
		}
		return Result{Status: StatusCritical, Output: out, Latency: latency}, nil
	}
	conn.Close()
	return Result{
		Status:  StatusPassing,
		Output:  fmt.Sprintf("connected to %s in %s (timeout %s)", target.Address, fmtDuration(latency), fmtDuration(c.timeout)),
		Latency: latency,
	}, nil
}
