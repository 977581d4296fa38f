// Command edgeinfer is fleetplan's demo edge application: a small HTTP
// "inference" service that runs on every device of the dev cluster (Nomad
// system job, raw_exec, see examples/edgeinfer.nomad.hcl) and can be told by
// environment variables to misbehave in the ways real edge releases do, so
// that fleetplan's health layers and rollback triggers can be exercised.
//
// Usage:
//
//	edgeinfer [-addr HOST:PORT] [-version]
//
// Endpoints:
//
//	GET  /health   {"status":"healthy|degraded|unhealthy","version":"...","build":"...",
//	               "model":"<MODEL, if set>","uptime_seconds":N,"checks":{...}};
//	               HTTP 200 unless unhealthy (503).
//	POST /infer    body {"image":"cat.jpg"} -> {"label":"cat","confidence":0.97,
//	               "model":"...","version":"..."}; the label is the image's base name
//	               without extension, lower-cased. 400 on a bad body (counted as error).
//	GET  /metrics  requests_total, errors_total, error_rate (of /infer, since start),
//	               window_requests, window_error_rate, p95_latency_ms (over the last
//	               200 /infer requests), rss_bytes (VmRSS), leaked_bytes,
//	               uptime_seconds, version, build.
//
// Configuration (environment):
//
//	EDGEINFER_ADDR                 default for -addr (else 127.0.0.1:8080)
//	NOMAD_META_fleetplan_version   version, set by fleetplan's job meta; "2.0.0+<rollout>"
//	                               reports "2.0.0" as version and the whole string as build
//	                               (NOMAD_META_FLEETPLAN_VERSION is accepted too)
//	EDGEINFER_VERSION              version when the Nomad meta is absent (same "+" rule);
//	                               else "0.0.0-dev"
//	MODEL                          model name (variant per node class); default
//	                               "edgeinfer-reference"; shown in /health when set
//
// Fault injection (environment). Every fault is off when its variable is unset
// or empty; a value that does not parse stops the program at start (exit 2),
// so a typo never silently disables a fault. Each fault acts on one surface
// only, so a test can tell which health layer caught it.
//
//	EDGEINFER_FAULT_CRASH=1             log the reason on stderr and exit(1) at start,
//	                                    before listening (a crash loop under Nomad).
//	EDGEINFER_FAULT_UNHEALTHY_AFTER=10s /health answers 503 "unhealthy" once uptime
//	                                    >= that duration ("10" means 10s; "0s" means
//	                                    from the start). /infer keeps working.
//	EDGEINFER_FAULT_DEGRADED=1          /health answers 200 "degraded".
//	EDGEINFER_FAULT_WRONG_OUTPUT=1      /infer answers a wrong label with 200: "dog",
//	                                    or "cat" when the right answer is "dog".
//	EDGEINFER_FAULT_SLOW=300ms          every /infer is delayed by that much.
//	EDGEINFER_FAULT_LATENCY_RAMP=50ms/s every /infer is delayed by 50ms per second of
//	                                    uptime (the denominator may be s, m, h or a
//	                                    duration such as 10s), added to the SLOW delay,
//	                                    capped by EDGEINFER_FAULT_LATENCY_RAMP_MAX
//	                                    (default 30s).
//	EDGEINFER_FAULT_ERROR_RATE=0.2      that fraction (0..1, or "20%") of /infer
//	                                    requests answer 500, deterministically: the
//	                                    n-th request (1-based, arrival order) fails
//	                                    when floor(n*rate) > floor((n-1)*rate), so
//	                                    0.2 fails requests 5, 10, 15, ... and exactly
//	                                    floor(n*rate) of the first n fail.
//	EDGEINFER_FAULT_LEAK_MB_PER_S=5     allocate and keep that many MiB per second of
//	                                    uptime (in 1 MiB chunks, every page touched so
//	                                    RSS grows), up to EDGEINFER_FAULT_LEAK_MAX_MB
//	                                    (default 512).
//	EDGEINFER_FAULT_WRONG_VERSION=9.9.9 /health reports that version (and build);
//	                                    /infer and /metrics keep the real one.
//	EDGEINFER_FAULT_NODES=rpi-1,gateway-2 apply the faults above only on these nodes:
//	                                    when EDGEINFER_NODE (the jobspec sets it to
//	                                    ${node.unique.name}) is not in the list, no
//	                                    fault is active (values are still checked).
//
// Booleans accept 1/0, true/false, t/f. Durations accept Go syntax ("300ms",
// "1m30s") or a plain number of seconds.
//
// Logs go to stderr; the first line carries the version, build, model, address
// and the active faults. SIGTERM and SIGINT (Nomad's default kill signal) stop
// the server gracefully: in-flight requests are finished (injected delays are
// cut short) within 5s and the process exits 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

const (
	defaultAddr     = "127.0.0.1:8080"
	shutdownTimeout = 5 * time.Second
	leakTick        = 250 * time.Millisecond
)

func main() {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("received %v", sig))
	}()
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	signal.Stop(sigs)
	os.Exit(code)
}

// run is the whole program: it returns the process exit code (0 after a
// graceful stop, 1 on a runtime failure or the crash fault, 2 on bad flags or
// configuration). It serves until ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, showVersion, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "edgeinfer: %v\n", err)
		return 2
	}
	if showVersion {
		fmt.Fprintf(stdout, "edgeinfer %s (build %s)\n", cfg.version, cfg.build)
		return 0
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	log.Info("edgeinfer starting",
		"version", cfg.version, "build", cfg.build, "model", cfg.modelName(),
		"addr", cfg.addr, "faults", cfg.faults.describe())

	if cfg.faults.crash {
		log.Error("simulated crash at start (EDGEINFER_FAULT_CRASH=1), exiting with status 1")
		return 1
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.addr, "err", err)
		return 1
	}

	s := newServer(cfg, time.Now, log)

	// Requests get a context that is cancelled when shutdown starts, so that
	// injected delays do not hold up a stop.
	baseCtx, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler(),
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "version", cfg.version)

	leakDone := make(chan struct{})
	go func() {
		defer close(leakDone)
		s.runLeak(baseCtx, leakTick)
	}()

	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx).Error())
	case err := <-serveErr:
		log.Error("server failed", "err", err)
		code = 1
	}

	cancelBase()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("graceful shutdown incomplete", "err", err)
		_ = srv.Close()
	}
	<-leakDone
	if code == 0 {
		log.Info("stopped", "version", cfg.version)
	}
	return code
}
