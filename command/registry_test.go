package command

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/registry"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/urfave/cli/v2"
)

func TestWriteDeviceTable(t *testing.T) {
	devs := []scheduler.Device{
		{ID: "d035e365-948d-3a0d-1d37-83c5328dbcb0", Name: "jetson-1", Class: "jetson", NomadStatus: "ready", ConsulStatus: "passing", Status: scheduler.StatusOK,
			Capabilities: scheduler.Capabilities{Model: "jetson-orin-nano", Accelerator: "cuda", Arch: "arm64"},
			Apps:         map[string]scheduler.AppSlot{"edgeinfer": {Slot: "blue", Version: "1.0.0"}, "cam": {Slot: "green"}}},
		{ID: "consul:ghost", Name: "ghost", ConsulStatus: "passing", Status: scheduler.StatusDiscrepancy, Resolved: true, Reason: "Consul node has no Nomad node"},
		{ID: "57561ffc-aaaa-bbbb-cccc-dddddddddddd", Name: "gw-2", Class: "gateway", NomadStatus: "down", Status: scheduler.StatusOffline, Reason: "Nomad node status down"},
	}
	var b bytes.Buffer
	writeDeviceTable(&b, devs)
	out := b.String()
	for _, want := range []string{
		"NAME", "ID", "CLASS", "STATUS", "NOMAD", "CONSUL", "MODEL", "ACCEL", "ARCH", "APPS", "REASON",
		"d035e365 ", "cam=green,edgeinfer=blue@1.0.0", "consul:ghost", "discrepancy (resolved)", "Nomad node status down",
		"3 devices: 1 ok, 1 offline, 1 discrepancy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "948d") {
		t.Errorf("IDs are not shortened to 8 characters:\n%s", out)
	}
}

func TestWriteDevice(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	d := &scheduler.Device{ID: "id-1", Name: "rpi-1", Class: "rpi", Status: scheduler.StatusQuarantined, Reason: "fan broken",
		NomadStatus: "ready", Eligibility: "eligible", ConsulStatus: "passing", LastHeartbeat: now.Add(-90 * time.Second),
		Capabilities: scheduler.Capabilities{MemoryMB: 4096}, Meta: map[string]string{"fleet": "vision"}}
	evs := []registry.Event{{Time: now, Actor: "alice", RegistryEvent: scheduler.RegistryEvent{Device: "id-1", Name: "rpi-1", Kind: "quarantined", Detail: "fan broken"}}}
	var b bytes.Buffer
	writeDevice(&b, d, evs, now)
	out := b.String()
	for _, want := range []string{"rpi-1", "quarantined", "no: quarantined: fan broken", "ready (eligible)", "serfHealth passing", "1m30s ago", "4096 MB", "fleet = vision", "Recent events:", "alice"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
}

func TestRegistryUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"registry", "show"},
		{"registry", "show", "a", "b"},
		{"registry", "quarantine", "rpi-1"},
		{"registry", "quarantine", "rpi-1", "-bogus", "x"},
		{"registry", "list", "-status", "sideways"},
		{"registry", "resolve"},
	} {
		_, stderr, code := runCLI(t, "", args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, ExitUsage, stderr)
		}
	}
}

func TestFlagsAfterArgumentsWithAliases(t *testing.T) {
	var got string
	app := &cli.App{Commands: []*cli.Command{{
		Name:  "approve",
		Flags: []cli.Flag{&cli.StringFlag{Name: "message", Aliases: []string{"m"}}},
		Action: func(c *cli.Context) error {
			args, err := positional(c)
			if err != nil {
				return err
			}
			got = args[0] + ":" + c.String("message")
			return nil
		},
	}}}
	if err := app.Run([]string{"fleetplan", "approve", "detector", "-m", "looks good"}); err != nil {
		t.Fatal(err)
	}
	if got != "detector:looks good" {
		t.Fatalf("got %q", got)
	}
}
