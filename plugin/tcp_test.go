package plugin

import (
	"context"
	"errors"
	"net"
	"testing"
)

func TestTCPProbe(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
			accepted <- struct{}{}
		}
	}()

	tests := []struct {
		name   string
		addr   string
		status Status
		output []string
	}{
		{"listening", l.Addr().String(), StatusPassing, []string{"connected to " + l.Addr().String() + " in ", "(timeout 2s)"}},
		{"connection refused", refusedAddr(t), StatusCritical, []string{"failed after", "connection refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProbe("tcp")
			if err != nil {
				t.Fatal(err)
			}
			configure(t, p, map[string]string{"timeout": "2s"})
			res, err := p.Probe(context.Background(), Target{Address: tt.addr})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.status {
				t.Errorf("status = %s, want %s (output %q)", res.Status, tt.status, res.Output)
			}
			wantContains(t, "output", res.Output, tt.output...)
			if tt.status == StatusPassing {
				<-accepted
			}
		})
	}
}

func TestTCPProbeCallerCancelled(t *testing.T) {
	p, _ := NewProbe("tcp")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Probe(ctx, Target{Address: refusedAddr(t)}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
