package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/urfave/cli/v2"
)

// proxyCommand is `nodesim proxy`: counting reverse proxies between
// fleetplan and the Nomad and Consul servers, so that the harness measures
// fleetplan's own requests (the simulated clients talk to the servers over
// RPC and gossip, not through them).
var proxyCommand = &cli.Command{
	Name:  "proxy",
	Usage: "count the HTTP requests fleetplan sends to the servers (per second, blocking queries open, node metadata writes)",
	Flags: []cli.Flag{
		&cli.StringSliceFlag{Name: "route", Required: true, Usage: "NAME=LISTEN=TARGET, e.g. nomad=127.0.0.1:14646=http://127.0.0.1:4646 (repeatable)"},
		&cli.StringFlag{Name: "stats", Value: "127.0.0.1:4701", Usage: "GET /stats answers the counts as JSON"},
	},
	Action: runProxy,
}

// second is one second of a route's traffic.
type second struct {
	Unix     int64 `json:"t"`
	Requests int   `json:"requests"`
	// Blocking is the number of blocking queries (an index parameter)
	// started; MaxOpen the most blocking queries open at once.
	Blocking int `json:"blocking"`
	MaxOpen  int `json:"max_open"`
	// Paths: the second's requests per path class (what a soak's
	// requests are).
	Paths map[string]int `json:"paths,omitempty"`
}

type route struct {
	Name   string `json:"name"`
	Target string `json:"target"`

	mu            sync.Mutex
	Total         int64    `json:"total"`
	BlockingTotal int64    `json:"blocking_total"`
	Open          int      `json:"open"`
	MaxOpen       int      `json:"max_open"`
	Seconds       []second `json:"seconds"`
	// MetaWrites are the times (Unix ms) of the node metadata writes
	// (one per device switch).
	MetaWrites []int64        `json:"meta_writes"`
	Paths      map[string]int `json:"paths"`
}

func (r *route) bucketLocked(now time.Time) *second {
	t := now.Unix()
	if n := len(r.Seconds); n > 0 && r.Seconds[n-1].Unix == t {
		return &r.Seconds[n-1]
	}
	r.Seconds = append(r.Seconds, second{Unix: t, MaxOpen: r.Open})
	return &r.Seconds[len(r.Seconds)-1]
}

// pathClass names a request for the per-path counts: the path without IDs.
func pathClass(req *http.Request) string {
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(parts) > 3 {
		parts = parts[:3]
	}
	for i, p := range parts {
		if len(p) >= 32 || strings.ContainsAny(p, "0123456789") && i >= 2 {
			parts[i] = "*"
		}
	}
	return req.Method + " /" + strings.Join(parts, "/")
}

func (r *route) ServeHTTP(w http.ResponseWriter, req *http.Request, next http.Handler) {
	now := time.Now()
	q := req.URL.Query()
	blocking := q.Get("index") != "" && q.Get("index") != "0"
	class := pathClass(req)
	r.mu.Lock()
	r.Total++
	r.Paths[class]++
	b := r.bucketLocked(now)
	b.Requests++
	if b.Paths == nil {
		b.Paths = map[string]int{}
	}
	b.Paths[class]++
	if blocking {
		r.BlockingTotal++
		r.Open++
		b.Blocking++
		r.MaxOpen = max(r.MaxOpen, r.Open)
		b.MaxOpen = max(b.MaxOpen, r.Open)
	}
	if strings.HasPrefix(req.URL.Path, "/v1/client/metadata") && req.Method != http.MethodGet {
		r.MetaWrites = append(r.MetaWrites, now.UnixMilli())
	}
	r.mu.Unlock()
	defer func() {
		if blocking {
			r.mu.Lock()
			r.Open--
			r.bucketLocked(time.Now())
			r.mu.Unlock()
		}
	}()
	next.ServeHTTP(w, req)
}

func runProxy(c *cli.Context) error {
	logger := hclog.New(&hclog.LoggerOptions{Name: "nodesim-proxy", Level: hclog.Info})
	ctx, stop := signal.NotifyContext(c.Context, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var routes []*route
	var servers []*http.Server
	for _, spec := range c.StringSlice("route") {
		parts := strings.SplitN(spec, "=", 3)
		if len(parts) != 3 {
			return fmt.Errorf("-route %q: want NAME=LISTEN=TARGET", spec)
		}
		target, err := url.Parse(parts[2])
		if err != nil || target.Host == "" {
			return fmt.Errorf("-route %q: the target %q is not a URL (http://host:port)", spec, parts[2])
		}
		rt := &route{Name: parts[0], Target: parts[2], Paths: map[string]int{}}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.FlushInterval = -1
		rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute, ResponseHeaderTimeout: 0}
		ln, err := net.Listen("tcp", parts[1])
		if err != nil {
			return fmt.Errorf("listening on %s for the %s proxy: %w", parts[1], parts[0], err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { rt.ServeHTTP(w, req, rp) }), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		routes = append(routes, rt)
		servers = append(servers, srv)
		logger.Info("proxying", "route", rt.Name, "listen", parts[1], "target", rt.Target)
	}
	ln, err := net.Listen("tcp", c.String("stats"))
	if err != nil {
		return fmt.Errorf("listening on %s for the proxy's stats: %w", c.String("stats"), err)
	}
	stats := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		out := map[string]any{}
		for _, rt := range routes {
			rt.mu.Lock()
			b, err := json.Marshal(rt)
			rt.mu.Unlock()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			out[rt.Name] = json.RawMessage(b)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})}
	go func() { _ = stats.Serve(ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range append(servers, stats) {
		_ = s.Shutdown(sctx)
	}
	return nil
}
