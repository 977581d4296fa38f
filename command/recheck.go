package command

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/checks"
	"github.com/fleetplan/fleetplan/contract"
)

func init() {
	register(&cli.Command{
		Name:  "recheck",
		Usage: "have the device agents run an application's checks on some devices now, and print what they found",
		Description: "The device agents on the named devices run the application's layer 2-4 probes at once (as\n" +
			"Consul runs them at their interval) and answer with a fresh device summary: the version and\n" +
			"slot measured, each layer's status and reason, the current figures. Only those devices work;\n" +
			"the others ignore the request. A device that does not answer within -wait is no evidence\n" +
			"either way (exit code 1). The agents' Consul checks keep their interval.",
		ArgsUsage: "APP DEVICE [DEVICE...]",
		Flags: []cli.Flag{
			jsonFlag(),
			&cli.DurationFlag{Name: "wait", Value: 15 * time.Second, Usage: "how long to wait for the answers"},
		},
		Action: recheckAction,
	})
}

// recheckDoc is what recheck prints with -json.
type recheckDoc struct {
	App string `json:"app"`
	// Answers are the fresh summaries, by device name.
	Answers map[string]contract.Summary `json:"answers"`
	// Missing are the devices that did not answer.
	Missing []string `json:"missing"`
}

func recheckAction(c *cli.Context) error {
	b, err := initCommand(c)
	if err != nil {
		return err
	}
	if len(b.args) < 2 {
		return exit(ExitUsage, "recheck takes an application and at least one device (see `fleetplan recheck -h`)\nUsage: fleetplan recheck [options] %s", c.Command.ArgsUsage)
	}
	app, devices := b.args[0], slices.Compact(slices.Sorted(slices.Values(b.args[1:])))
	if err := b.connect(); err != nil {
		return err
	}
	w := checks.NewWatcher(b.op.Nomad, b.op.Consul, b.log)
	defer w.Stop()
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("wait"))
	defer cancel()
	start := time.Now()
	got, err := w.Recheck(ctx, app, devices)
	if err != nil && len(got) == 0 {
		return exit(ExitInternal, "%v", err)
	}
	doc := recheckDoc{App: app, Answers: got, Missing: []string{}}
	for _, d := range devices {
		if _, ok := got[d]; !ok {
			doc.Missing = append(doc.Missing, d)
		}
	}
	if c.Bool("json") {
		if err := printJSON(c, doc); err != nil {
			return err
		}
	} else {
		printRecheck(c.App.Writer, doc, devices, time.Since(start), c.Duration("wait"))
	}
	if len(doc.Missing) > 0 {
		return exit(ExitFailed, "%d of %d devices did not answer within %s: %s", len(doc.Missing), len(devices), c.Duration("wait"), strings.Join(doc.Missing, ", "))
	}
	return nil
}

func printRecheck(out io.Writer, doc recheckDoc, devices []string, took, wait time.Duration) {
	fmt.Fprintf(out, "Re-check of %s on %d %s (%s):\n", doc.App, len(devices), pluralWord(len(devices), "device", "devices"), took.Round(100*time.Millisecond))
	for _, d := range devices {
		s, ok := doc.Answers[d]
		if !ok {
			fmt.Fprintf(out, "\n  %s: no answer — no evidence either way (its agent did not answer within %s, or has never written a summary: is the fleetplan agent running there, with an instance of %s?)\n", d, wait, doc.App)
			continue
		}
		fmt.Fprintf(out, "\n  %s: %s on slot %s\n", d, s.Version, s.Slot)
		for _, layer := range []string{contract.LayerSystem, contract.LayerApplication, contract.LayerFunctional} {
			l, ok := s.Layers[layer]
			if !ok {
				continue
			}
			line := fmt.Sprintf("    %-12s %s", layer, l.Status)
			if l.Reason != "" {
				line += ": " + l.Reason
			}
			fmt.Fprintln(out, line)
		}
		if m := s.Current; m != nil {
			var parts []string
			add := func(name string, v *float64, format string) {
				if v != nil {
					parts = append(parts, name+" "+fmt.Sprintf(format, *v))
				}
			}
			add("error rate", m.ErrorRate, "%.3f")
			add("p95", m.P95LatencyMS, "%.1f ms")
			add("memory", m.RSSMB, "%.1f MB")
			add("cpu", m.CPUPercent, "%.0f%%")
			if len(parts) > 0 {
				fmt.Fprintf(out, "    %-12s %s\n", "now", strings.Join(parts, ", "))
			}
		}
	}
}

func pluralWord(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
