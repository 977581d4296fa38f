package faults

import (
	"context"
	"fmt"
	"math/rand"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// ProxyConfig are the fault rates of a Proxy (fractions of requests).
type ProxyConfig struct {
	// ErrorRate answers 500 without forwarding.
	ErrorRate float64
	// DropRate closes the connection without an answer: half of them
	// before forwarding, half after (the request took effect, its answer
	// is lost).
	DropRate float64
	// LatencyRate delays the request by up to MaxLatency before forwarding.
	LatencyRate float64
	MaxLatency  time.Duration
	// Seed seeds the proxy's RNG (the same seed draws the same faults for
	// the same sequence of requests).
	Seed int64
}

func (c ProxyConfig) String() string {
	return fmt.Sprintf("500s %.0f%%, drops %.0f%%, latency %.0f%% up to %s",
		100*c.ErrorRate, 100*c.DropRate, 100*c.LatencyRate, c.MaxLatency)
}

// ProxyStats counts what a Proxy did.
type ProxyStats struct {
	Requests, Errors, Drops, Delayed int
}

// Proxy is a reverse proxy on a loopback port in front of one API (Nomad or
// Consul) that injects faults at seeded random.
type Proxy struct {
	// Addr is host:port of the proxy.
	Addr string

	cfg    ProxyConfig
	target *url.URL
	rp     *httputil.ReverseProxy
	srv    *http.Server
	ln     net.Listener

	mu      sync.Mutex
	rng     *rand.Rand
	enabled bool
	stats   ProxyStats
}

// StartProxy starts a proxy in front of target (an http:// URL).
func StartProxy(target string, cfg ProxyConfig) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("parsing the proxy target %q: %w", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening for the proxy of %s: %w", target, err)
	}
	p := &Proxy{Addr: ln.Addr().String(), cfg: cfg, target: u, ln: ln,
		rng: rand.New(rand.NewSource(cfg.Seed)), enabled: true}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	// Blocking queries and streams pass through as they come.
	p.rp.FlushInterval = -1
	p.rp.ErrorLog = nil
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// SetEnabled turns fault injection on or off (off: a plain proxy).
func (p *Proxy) SetEnabled(on bool) {
	p.mu.Lock()
	p.enabled = on
	p.mu.Unlock()
}

// Stats returns what the proxy did so far.
func (p *Proxy) Stats() ProxyStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Close stops the proxy.
func (p *Proxy) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := p.srv.Shutdown(ctx); err != nil {
		return p.srv.Close()
	}
	return nil
}

type fault int

const (
	faultNone fault = iota
	faultError
	faultDropBefore
	faultDropAfter
	faultDelay
)

// draw picks the fault of one request.
func (p *Proxy) draw() (fault, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	if !p.enabled {
		return faultNone, 0
	}
	x := p.rng.Float64()
	c := p.cfg
	switch {
	case x < c.ErrorRate:
		p.stats.Errors++
		return faultError, 0
	case x < c.ErrorRate+c.DropRate:
		p.stats.Drops++
		if p.rng.Intn(2) == 0 {
			return faultDropBefore, 0
		}
		return faultDropAfter, 0
	case x < c.ErrorRate+c.DropRate+c.LatencyRate && c.MaxLatency > 0:
		p.stats.Delayed++
		return faultDelay, time.Duration(p.rng.Int63n(int64(c.MaxLatency)))
	}
	return faultNone, 0
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	f, delay := p.draw()
	switch f {
	case faultError:
		http.Error(w, "fault proxy: injected 500 (rpc error: leader unavailable)", http.StatusInternalServerError)
		return
	case faultDropBefore:
		drop(w)
		return
	case faultDropAfter:
		// Forward, wait for the answer, then lose it.
		req := r.Clone(r.Context())
		req.URL.Scheme, req.URL.Host, req.RequestURI = p.target.Scheme, p.target.Host, ""
		if resp, err := http.DefaultTransport.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
		drop(w)
		return
	case faultDelay:
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	p.rp.ServeHTTP(w, r)
}

// drop closes the client's connection without an answer.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panicFree500(w)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panicFree500(w)
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset, like a dropped connection
	}
	_ = conn.Close()
}

func panicFree500(w http.ResponseWriter) {
	http.Error(w, "fault proxy: cannot drop this connection", http.StatusBadGateway)
}
