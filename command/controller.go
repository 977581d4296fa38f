package command

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/controller"
	"github.com/fleetplan/fleetplan/deploy"
	"github.com/fleetplan/fleetplan/internal/blocking"
	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/store"
)

func init() {
	register(&cli.Command{
		Name:  "controller",
		Usage: "run the controller service, which carries out submitted rollouts to the end (or install it on Nomad)",
		Description: `Runs the fleetplan controller service: it carries out every rollout submitted to
it (` + "`fleetplan apply`" + ` writes a request to Consul KV when the service runs) from
submission to the end, whatever happens to the operator's terminal, and catches
up devices that return after a run finished.

Any number of instances may run: one leads (a Consul session lock on
fleetplan/controller/leader), the others stand by and take over within about
the session TTL plus the lock delay when the leader dies or freezes (the leader
writes a heartbeat after each renewal of its session; a standby that sees it
stay still for a TTL destroys the leader's session), at once when it stops on
SIGTERM or SIGINT. Before every Nomad action and state write the leader checks
that its session still holds its locks (a local lease and a consistent read).

Operational endpoints on -http-addr: GET /v1/health (200 with the role and the
rollouts; 503 when Consul does not answer) and GET /metrics (Prometheus).`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "http-addr", Value: "127.0.0.1:4680", EnvVars: []string{"FLEETPLAN_CONTROLLER_HTTP_ADDR"}, Usage: "listen address of /v1/health and /metrics"},
			&cli.StringFlag{Name: "log-level", Value: "info", EnvVars: []string{"FLEETPLAN_LOG_LEVEL"}, Usage: "trace, debug, info, warn or error"},
			&cli.StringFlag{Name: "name", Usage: "this instance's name in the locks and the audit trail (default: host and pid, or the Nomad allocation)"},
			&cli.DurationFlag{Name: "session-ttl", Value: 10 * time.Second, Usage: "TTL of the Consul session holding the locks (at least 10s); a dead leader is replaced within about TTL + lock delay"},
			&cli.DurationFlag{Name: "lock-delay", Value: time.Second, Usage: "Consul's lock delay after a session is invalidated"},
			&cli.DurationFlag{Name: "scan-interval", Value: 2 * time.Second, Usage: "how often the leader looks for new rollout requests"},
			&cli.DurationFlag{Name: "catchup-interval", Value: 30 * time.Second, Usage: "how often the leader catches up devices that returned after a run finished"},
		},
		Action: controllerAction,
		Subcommands: []*cli.Command{
			{
				Name:  "install",
				Usage: "register the fleetplan-controller service job in Nomad (NOMAD_ADDR)",
				Description: `Registers (or updates) the Nomad service job fleetplan-controller
(deploy/fleetplan-controller.nomad.hcl): two allocations on distinct nodes running
"fleetplan controller" with raw_exec, registered in Consul with a health check on
/v1/health. NOMAD_ADDR and CONSUL_HTTP_ADDR of this environment are passed to it
(never a token: see the jobspec's template for Nomad Variables).`,
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "command", Value: "${meta.edge.bin_dir}/fleetplan", Usage: "the fleetplan binary on the nodes"},
					&cli.StringFlag{Name: "node-class", Usage: "run only on nodes of this class (server-class nodes on a real cluster)"},
					&cli.StringFlag{Name: "log-level", Value: "info", Usage: "the controllers' log level"},
					&cli.BoolFlag{Name: "token-from-variable", Usage: "with ACLs on: the controllers read their Nomad and Consul tokens from the Nomad Variable nomad/jobs/fleetplan-controller (items nomad_token, consul_token) through a template, never from the jobspec"},
					&cli.BoolFlag{Name: "print", Usage: "print the job as JSON instead of registering it"},
				},
				Action: controllerInstallAction,
			},
			{
				Name:   "uninstall",
				Usage:  "stop and purge the fleetplan-controller job (its leader gives its locks back; apply then runs rollouts in-process)",
				Action: controllerUninstallAction,
			},
		},
	})
}

func controllerAction(c *cli.Context) error {
	if c.NArg() > 0 {
		return exit(ExitUsage, "unknown controller subcommand %q (see `fleetplan controller -h`)", c.Args().First())
	}
	if ttl := c.Duration("session-ttl"); ttl < 10*time.Second {
		return exit(ExitUsage, "-session-ttl %s: Consul's minimum session TTL is 10s", ttl)
	}
	log := logger(c).Named("controller")
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()

	ln, err := net.Listen("tcp", c.String("http-addr"))
	if err != nil {
		return exit(ExitUsage, "listening on -http-addr %s: %v", c.String("http-addr"), err)
	}
	// Nomad or Consul may not answer yet (the service starts with the
	// cluster): keep trying rather than exit and be restarted.
	var op *operator.Operator
	for failures := 1; ; failures++ {
		op, err = operator.Connect(log)
		if err == nil {
			break
		}
		wait := blocking.Backoff(failures, time.Second, 30*time.Second)
		log.Warn("connecting to Nomad and Consul; trying again", "error", err, "wait", wait)
		if blocking.Sleep(ctx, wait) != nil {
			_ = ln.Close()
			return nil
		}
	}
	op.Store = store.New(op.Consul, store.Options{Logger: log, SessionTTL: c.Duration("session-ttl"), LockDelay: c.Duration("lock-delay")})
	svc := controller.New(controller.Config{
		Operator:        op,
		Name:            c.String("name"),
		ScanInterval:    c.Duration("scan-interval"),
		CatchUpInterval: c.Duration("catchup-interval"),
		Namespace:       operator.Namespace(),
		Logger:          log,
	})
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("the HTTP endpoints stopped", "error", err)
		}
	}()
	log.Info("controller started", "instance", svc.Name(), "http", ln.Addr().String(), "session_ttl", c.Duration("session-ttl"), "lock_delay", c.Duration("lock-delay"))
	err = svc.Run(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	log.Info("controller stopped; its locks are released")
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	return nil
}

// controllerJob parses the controller's jobspec on the Nomad server with
// the variables of this environment.
func controllerJob(ctx context.Context, nc *nomadapi.Client, c *cli.Context) (*nomadapi.Job, error) {
	nomadAddr := os.Getenv("NOMAD_ADDR")
	if nomadAddr == "" {
		nomadAddr = "http://127.0.0.1:4646"
	}
	consulAddr := os.Getenv("CONSUL_HTTP_ADDR")
	if consulAddr == "" {
		consulAddr = "127.0.0.1:8500"
	}
	vars := fmt.Sprintf("command = %q\nnomad_addr = %q\nconsul_addr = %q\nnode_class = %q\nlog_level = %q\ntokens_from_variable = %t\n",
		c.String("command"), nomadAddr, consulAddr, c.String("node-class"), c.String("log-level"), c.Bool("token-from-variable"))
	// HCL variables files interpolate "${": escape it.
	vars = strings.ReplaceAll(vars, "${", "$${")
	req := &nomadapi.JobsParseRequest{JobHCL: deploy.ControllerJobspec, Variables: vars, Canonicalize: true}
	var job nomadapi.Job
	if _, err := nc.Raw().Write("/v1/jobs/parse", req, &job, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("parsing the controller's jobspec (deploy/fleetplan-controller.nomad.hcl) with the Nomad server: %w", err)
	}
	return &job, nil
}

func controllerInstallAction(c *cli.Context) error {
	nc, err := operator.NomadClient()
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	job, err := controllerJob(ctx, nc, c)
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	if c.Bool("print") {
		return printJSON(c, job)
	}
	resp, _, err := nc.Jobs().Register(job, (&nomadapi.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return exit(ExitInternal, "registering job %s: %v", deploy.ControllerJobID, err)
	}
	fmt.Fprintf(c.App.Writer, "registered job %s (evaluation %s): two controllers, one leads; `fleetplan apply` now submits rollouts to it\n", deploy.ControllerJobID, resp.EvalID)
	for _, w := range strings.Split(strings.TrimSpace(resp.Warnings), "\n") {
		if w != "" {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
		}
	}
	return nil
}

func controllerUninstallAction(c *cli.Context) error {
	nc, err := operator.NomadClient()
	if err != nil {
		return exit(ExitInternal, "%v", err)
	}
	ctx, cancel := context.WithTimeout(c.Context, time.Minute)
	defer cancel()
	if _, _, err := nc.Jobs().Deregister(deploy.ControllerJobID, true, (&nomadapi.WriteOptions{}).WithContext(ctx)); err != nil {
		return exit(ExitInternal, "purging job %s: %v", deploy.ControllerJobID, err)
	}
	fmt.Fprintf(c.App.Writer, "purged job %s; rollouts it ran stop where they are (their state is in Consul): `fleetplan apply` runs them in-process from now on\n", deploy.ControllerJobID)
	return nil
}
