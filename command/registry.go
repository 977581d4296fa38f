package command

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
	"github.com/fleetplan/fleetplan/registry"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// regDeviceJSONFlag is the -json flag of the commands that change one
// device.
func regDeviceJSONFlag() cli.Flag {
	return &cli.BoolFlag{Name: "json", Usage: "print the device as one JSON object"}
}

var regStaleFlag = &cli.BoolFlag{Name: "stale", Usage: "show the registry as stored, without syncing it with Nomad and Consul first"}

func init() {
	register(&cli.Command{
		Name:  "registry",
		Usage: "the device registry: every device as Nomad and Consul see it",
		Description: `The registry is kept in Consul KV under <kv-prefix>registry/, one key per
device, and synced with the Nomad node list and Consul's serfHealth checks.
A device is ok (both agree it is up), offline (known but not responding),
quarantined (excluded from rollouts until released) or in discrepancy (one
of Nomad and Consul does not know it; not deployed to until it clears or is
resolved). list, show and sync sync it first (unless -stale).`,
		Subcommands: []*cli.Command{
			{
				Name:      "list",
				Usage:     "list the devices",
				ArgsUsage: " ",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print a JSON array of devices"},
					&cli.StringFlag{Name: "class", Usage: "only devices of this node class"},
					&cli.StringFlag{Name: "status", Usage: "only devices with this status (ok, offline, quarantined, discrepancy; comma-separated)"},
					regStaleFlag,
				},
				Action: registryList,
			},
			{
				Name:      "show",
				Usage:     "show everything about one device, with its recent events",
				ArgsUsage: "DEVICE",
				Flags: []cli.Flag{
					&cli.BoolFlag{Name: "json", Usage: "print {\"device\": ..., \"events\": [...]}"},
					&cli.IntFlag{Name: "events", Value: 20, Usage: "how many recent events to show"},
					regStaleFlag,
				},
				Action: registryShow,
			},
			{
				Name:      "sync",
				Usage:     "sync the registry with Nomad and Consul now and print what changed",
				ArgsUsage: " ",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the events as a JSON array"}},
				Action:    registrySync,
			},
			{
				Name:      "watch",
				Usage:     "keep the registry in sync (blocking queries on Nomad and Consul) and print its events until interrupted",
				ArgsUsage: " ",
				Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print each event as one JSON object per line (JSON lines)"}},
				Action:    registryWatch,
			},
			{
				Name:      "resolve",
				Usage:     "accept a device's discrepancy so that rollouts may deploy to it",
				ArgsUsage: "DEVICE",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "actor", Usage: "who resolves (default: user@host)"}, regDeviceJSONFlag()},
				Action:    registryResolve,
			},
			{
				Name:      "quarantine",
				Usage:     "exclude a device from rollouts until it is released",
				ArgsUsage: "DEVICE -reason REASON",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "reason", Usage: "why (required)"},
					&cli.StringFlag{Name: "actor", Usage: "who quarantines (default: user@host)"},
					regDeviceJSONFlag(),
				},
				Action: registryQuarantine,
			},
			{
				Name:      "release",
				Usage:     "lift a device's quarantine",
				ArgsUsage: "DEVICE",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "actor", Usage: "who releases (default: user@host)"}, regDeviceJSONFlag()},
				Action:    registryRelease,
			},
		},
	})
}

// openRegistry connects to the cluster. With offline, Nomad is not
// contacted (the stored registry only needs Consul).
func openRegistry(c *cli.Context, offline bool) (*registry.Registry, error) {
	return operator.OpenRegistry(registry.Options{Prefix: c.String("kv-prefix"), Logger: logger(c), Actor: regActor(c)}, offline)
}

func regActor(c *cli.Context) string {
	if c.IsSet("actor") && c.String("actor") != "" {
		return c.String("actor")
	}
	return store.DefaultActor()
}

// regRequestActor is who a quarantine or a release is recorded as made by,
// resolved as for approve, pause, resume and rollback (operator.Actor):
// with Consul ACLs on, the Consul token the change is written with, -actor
// (default user@host) being a comment beside it; with ACLs off, -actor or
// user@host. A token that cannot be read fails the command before it
// changes anything.
func regRequestActor(c *cli.Context) (string, error) {
	cc, err := operator.ConsulClient()
	if err != nil {
		return "", err
	}
	return (&operator.Operator{Consul: cc}).Actor(c.Context, regActor(c))
}

// oneDevice returns the DEVICE argument.
func oneDevice(c *cli.Context) (string, error) {
	b, err := initCommand(c, withExactArgs(1, "device (node name or ID)"))
	if err != nil {
		return "", err
	}
	return b.args[0], nil
}

// regFail maps an error of a registry operation to an exit status.
func regFail(c *cli.Context, err error) error {
	if errors.Is(err, registry.ErrUnknownDevice) {
		return exit(ExitUsage, "registry %s: %v", c.Command.Name, err)
	}
	return exit(ExitInternal, "registry %s: %v", c.Command.Name, err)
}

var registryStatuses = []scheduler.RegistryStatus{scheduler.StatusOK, scheduler.StatusOffline, scheduler.StatusQuarantined, scheduler.StatusDiscrepancy}

func registryList(c *cli.Context) error {
	if _, err := initCommand(c, withNoArgs()); err != nil {
		return err
	}
	want := map[scheduler.RegistryStatus]bool{}
	if s := c.String("status"); s != "" {
		for _, st := range strings.Split(s, ",") {
			st := scheduler.RegistryStatus(strings.TrimSpace(st))
			if !slices.Contains(registryStatuses, st) {
				return exit(ExitUsage, "registry list: unknown status %q (one of ok, offline, quarantined, discrepancy)", st)
			}
			want[st] = true
		}
	}
	reg, err := openRegistry(c, c.Bool("stale"))
	if err != nil {
		return exit(ExitInternal, "registry list: %v", err)
	}
	if !c.Bool("stale") {
		if _, err := reg.Sync(c.Context); err != nil {
			return exit(ExitInternal, "registry list: syncing the registry: %v\n(use -stale to show it as stored)", err)
		}
	}
	devs, err := reg.List(c.Context)
	if err != nil {
		return regFail(c, err)
	}
	out := make([]scheduler.Device, 0, len(devs))
	for _, d := range devs {
		if cl := c.String("class"); cl != "" && d.Class != cl {
			continue
		}
		if len(want) > 0 && !want[d.Status] {
			continue
		}
		out = append(out, d)
	}
	if c.Bool("json") {
		return regJSON(c.App.Writer, out)
	}
	if len(out) == 0 {
		if len(devs) == 0 {
			fmt.Fprintln(c.App.Writer, "The registry is empty: Nomad lists no nodes.")
		} else {
			fmt.Fprintf(c.App.Writer, "No device matches (the registry has %d).\n", len(devs))
		}
		return nil
	}
	writeDeviceTable(c.App.Writer, out)
	return nil
}

// writeDeviceTable prints the registry list table and a summary line.
func writeDeviceTable(w io.Writer, devs []scheduler.Device) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tCLASS\tSTATUS\tNOMAD\tCONSUL\tMODEL\tACCEL\tARCH\tAPPS\tREASON")
	counts := map[scheduler.RegistryStatus]int{}
	for _, d := range devs {
		counts[d.Status]++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			d.Name, shortID(d.ID), dash(d.Class), statusText(d), dash(d.NomadStatus), dash(d.ConsulStatus),
			dash(d.Capabilities.Model), dash(d.Capabilities.Accelerator), dash(d.Capabilities.Arch), dash(appsText(d.Apps)), dash(reasonText(d)))
	}
	tw.Flush()
	var parts []string
	for _, st := range registryStatuses {
		if n := counts[st]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	noun := "devices"
	if len(devs) == 1 {
		noun = "device"
	}
	fmt.Fprintf(w, "\n%d %s: %s\n", len(devs), noun, strings.Join(parts, ", "))
}

func shortID(id string) string {
	if strings.HasPrefix(id, scheduler.ConsulOnlyPrefix) {
		return id
	}
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func statusText(d scheduler.Device) string {
	if d.Status == scheduler.StatusDiscrepancy && d.Resolved {
		return "discrepancy (resolved)"
	}
	return dash(string(d.Status))
}

func reasonText(d scheduler.Device) string { return d.Reason }

// appsText renders the applications as app=slot@version.
func appsText(apps map[string]scheduler.AppSlot) string {
	var parts []string
	for _, app := range slices.Sorted(maps.Keys(apps)) {
		s := apps[app]
		p := app + "=" + s.Slot
		if s.Version != "" {
			p += "@" + s.Version
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ",")
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func regJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func registryShow(c *cli.Context) error {
	name, err := oneDevice(c)
	if err != nil {
		return err
	}
	reg, err := openRegistry(c, c.Bool("stale"))
	if err != nil {
		return exit(ExitInternal, "registry show: %v", err)
	}
	if !c.Bool("stale") {
		if _, err := reg.Sync(c.Context); err != nil {
			return exit(ExitInternal, "registry show: syncing the registry: %v\n(use -stale to show it as stored)", err)
		}
	}
	d, err := reg.Get(c.Context, name)
	if err != nil {
		return regFail(c, err)
	}
	events, err := reg.DeviceEvents(c.Context, d.ID, d.Name, c.Int("events"))
	if err != nil {
		return regFail(c, err)
	}
	if c.Bool("json") {
		if events == nil {
			events = []registry.Event{}
		}
		return regJSON(c.App.Writer, struct {
			Device *scheduler.Device `json:"device"`
			Events []registry.Event  `json:"events"`
		}{d, events})
	}
	writeDevice(c.App.Writer, d, events, time.Now())
	return nil
}

// writeDevice prints one device and its events.
func writeDevice(w io.Writer, d *scheduler.Device, events []registry.Event, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, dash(v)) }
	row("Name", d.Name)
	row("ID", d.ID)
	row("Class", d.Class)
	row("Datacenter", d.Datacenter)
	row("Status", statusText(*d))
	row("Reason", d.Reason)
	if ok, why := d.Deployable(); ok {
		row("Deployable", "yes")
	} else {
		row("Deployable", "no: "+why)
	}
	nomad := d.NomadStatus
	if d.Eligibility != "" {
		nomad += " (" + d.Eligibility + ")"
	}
	if d.NomadStatus == "" {
		nomad = "unknown to Nomad"
	}
	row("Nomad", nomad)
	consul := d.ConsulStatus
	if consul == "" {
		consul = "unknown to Consul"
	} else {
		consul = "serfHealth " + consul
	}
	row("Consul", consul)
	row("Address", d.Address)
	hb := ""
	if !d.LastHeartbeat.IsZero() {
		hb = d.LastHeartbeat.Local().Format(time.RFC3339) + " (" + fmtAgo(now.Sub(d.LastHeartbeat)) + " ago; recorded every few minutes while up)"
	}
	row("Last heartbeat", hb)
	cp := d.Capabilities
	row("Arch", cp.Arch)
	row("OS", cp.OS)
	row("Kernel", cp.Kernel)
	mem := ""
	if cp.MemoryMB > 0 {
		mem = fmt.Sprintf("%d MB", cp.MemoryMB)
	}
	row("Memory", mem)
	row("Accelerator", cp.Accelerator)
	row("Model", cp.Model)
	if len(d.Apps) == 0 {
		row("Apps", "")
	}
	for i, app := range slices.Sorted(maps.Keys(d.Apps)) {
		k := ""
		if i == 0 {
			k = "Apps"
		}
		s := d.Apps[app]
		v := app + ": slot " + s.Slot
		if s.Version != "" {
			v += ", version " + s.Version
		}
		row(k, v)
	}
	for i, k := range slices.Sorted(maps.Keys(d.Meta)) {
		key := ""
		if i == 0 {
			key = "Meta"
		}
		row(key, k+" = "+d.Meta[k])
	}
	tw.Flush()

	fmt.Fprintln(w)
	if len(events) == 0 {
		fmt.Fprintln(w, "Recent events: none")
		return
	}
	fmt.Fprintln(w, "Recent events:")
	writeEvents(w, events, false)
}

// writeEvents prints events as a table.
func writeEvents(w io.Writer, events []registry.Event, withDevice bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if withDevice {
		fmt.Fprintln(tw, "TIME\tDEVICE\tKIND\tACTOR\tDETAIL")
	} else {
		fmt.Fprintln(tw, "TIME\tKIND\tACTOR\tDETAIL")
	}
	for _, e := range events {
		t := e.Time.Local().Format("2006-01-02 15:04:05")
		if withDevice {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t, dash(e.Name), e.Kind, e.Actor, e.Detail)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t, e.Kind, e.Actor, e.Detail)
		}
	}
	tw.Flush()
}

func fmtAgo(d time.Duration) string {
	switch {
	case d < time.Second:
		return "0s"
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

func registrySync(c *cli.Context) error {
	if _, err := initCommand(c, withNoArgs()); err != nil {
		return err
	}
	reg, err := openRegistry(c, false)
	if err != nil {
		return exit(ExitInternal, "registry sync: %v", err)
	}
	events, err := reg.Sync(c.Context)
	if c.Bool("json") {
		if events == nil {
			events = []registry.Event{}
		}
		if jerr := regJSON(c.App.Writer, events); jerr != nil {
			return exit(ExitInternal, "registry sync: %v", jerr)
		}
	} else if len(events) > 0 {
		writeEvents(c.App.Writer, events, true)
	}
	if err != nil {
		return exit(ExitInternal, "registry sync: %v", err)
	}
	if !c.Bool("json") {
		devs, err := reg.List(c.Context)
		if err != nil {
			return regFail(c, err)
		}
		counts := map[scheduler.RegistryStatus]int{}
		for _, d := range devs {
			counts[d.Status]++
		}
		var parts []string
		for _, st := range registryStatuses {
			if n := counts[st]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, st))
			}
		}
		change := "no changes"
		if len(events) > 0 {
			change = fmt.Sprintf("%d events", len(events))
			if len(events) == 1 {
				change = "1 event"
			}
		}
		fmt.Fprintf(c.App.Writer, "Registry synced, %s: %d devices (%s).\n", change, len(devs), strings.Join(parts, ", "))
	}
	return nil
}

func registryResolve(c *cli.Context) error {
	name, err := oneDevice(c)
	if err != nil {
		return err
	}
	actor, err := regRequestActor(c)
	if err != nil {
		return exit(ExitInternal, "registry resolve: %v", err)
	}
	reg, err := openRegistry(c, true)
	if err != nil {
		return exit(ExitInternal, "registry resolve: %v", err)
	}
	d, err := reg.Resolve(c.Context, name, actor)
	if err != nil {
		return regFail(c, err)
	}
	if c.Bool("json") {
		return regJSON(c.App.Writer, d)
	}
	fmt.Fprintf(c.App.Writer, "Resolved the discrepancy of %s (%s): %s\nRollouts may deploy to it again; the mark clears when Nomad and Consul agree.\n", d.Name, d.ID, d.Reason)
	return nil
}

func registryQuarantine(c *cli.Context) error {
	name, err := oneDevice(c)
	if err != nil {
		return err
	}
	if strings.TrimSpace(c.String("reason")) == "" {
		return exit(ExitUsage, "registry quarantine: say why with -reason\nUsage: fleetplan registry quarantine DEVICE -reason REASON")
	}
	actor, err := regRequestActor(c)
	if err != nil {
		return exit(ExitInternal, "registry quarantine %s: %v", name, err)
	}
	reg, err := openRegistry(c, true)
	if err != nil {
		return exit(ExitInternal, "registry quarantine: %v", err)
	}
	d, err := reg.QuarantineBy(c.Context, name, c.String("reason"), actor)
	if err != nil {
		return regFail(c, err)
	}
	if c.Bool("json") {
		return regJSON(c.App.Writer, d)
	}
	fmt.Fprintf(c.App.Writer, "%s (%s) is quarantined: %s\nRollouts leave it out until `fleetplan registry release %s`.\n", d.Name, d.ID, d.Reason, d.Name)
	return nil
}

func registryRelease(c *cli.Context) error {
	name, err := oneDevice(c)
	if err != nil {
		return err
	}
	actor, err := regRequestActor(c)
	if err != nil {
		return exit(ExitInternal, "registry release %s: %v", name, err)
	}
	reg, err := openRegistry(c, false)
	if err != nil {
		return exit(ExitInternal, "registry release: %v", err)
	}
	d, err := reg.Release(c.Context, name, actor)
	if err != nil {
		if d != nil {
			fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err)
			if c.Bool("json") {
				return regJSON(c.App.Writer, d)
			}
			fmt.Fprintf(c.App.Writer, "Released %s (%s) from quarantine.\n", d.Name, d.ID)
			return nil
		}
		return regFail(c, err)
	}
	if c.Bool("json") {
		return regJSON(c.App.Writer, d)
	}
	status := string(d.Status)
	if d.Reason != "" {
		status += ": " + d.Reason
	}
	fmt.Fprintf(c.App.Writer, "Released %s (%s) from quarantine; it is %s.\n", d.Name, d.ID, status)
	return nil
}

func registryWatch(c *cli.Context) error {
	if _, err := initCommand(c, withNoArgs()); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := c.App.Writer
	lines := json.NewEncoder(w) // -json: one event per line
	reg, err := operator.OpenRegistry(registry.Options{
		Prefix: c.String("kv-prefix"),
		Logger: logger(c),
		OnSync: func(events []registry.Event, err error) {
			if err != nil {
				fmt.Fprintf(c.App.ErrWriter, "%s  sync failed (retrying): %v\n", time.Now().Format("15:04:05"), err)
				return
			}
			for _, e := range events {
				if c.Bool("json") {
					if err := lines.Encode(e); err != nil {
						fmt.Fprintf(c.App.ErrWriter, "registry watch: writing an event: %v\n", err)
					}
					continue
				}
				fmt.Fprintf(w, "%s  %-12s %-20s %s\n", e.Time.Local().Format("15:04:05"), e.Name, e.Kind, e.Detail)
			}
		},
	}, false)
	if err != nil {
		return exit(ExitInternal, "registry watch: %v", err)
	}
	fmt.Fprintln(c.App.ErrWriter, "Watching Nomad nodes and Consul serfHealth; Ctrl-C to stop.")
	if err := reg.Watch(ctx); err != nil && ctx.Err() == nil {
		return exit(ExitInternal, "registry watch: %v", err)
	}
	return nil
}
