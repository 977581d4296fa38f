package command

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/registry"
	"github.com/fleetplan/fleetplan/scheduler"
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

// fakeACLConsul is a Consul agent with ACLs on, just enough for `registry
// quarantine` and `registry release`: it knows one device, rpi-1, and
// answers /v1/acl/token/self with token (403 when token is ""). It records
// every request and the KV values of every transaction.
type fakeACLConsul struct {
	mu       sync.Mutex
	requests []string          // "GET /v1/kv/..."
	written  map[string][]byte // key -> value of the transactions' KV operations
}

func newFakeACLConsul(t *testing.T, token string) *fakeACLConsul {
	t.Helper()
	f := &fakeACLConsul{written: map[string][]byte{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, r.Method+" "+r.URL.Path)
		switch {
		case r.URL.Path == "/v1/status/leader":
			_, _ = w.Write([]byte(`"127.0.0.1:8300"`))
		case r.URL.Path == "/v1/acl/token/self":
			if token == "" {
				w.WriteHeader(http.StatusForbidden)
				_, _ = w.Write([]byte("ACL not found"))
				return
			}
			_, _ = w.Write([]byte(token))
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/registry/rpi-1"):
			dev, _ := json.Marshal(scheduler.Device{Name: "rpi-1", Class: "rpi", Status: scheduler.StatusOK})
			pairs, _ := json.Marshal(consulapi.KVPairs{{Key: strings.TrimPrefix(r.URL.Path, "/v1/kv/"), Value: dev, ModifyIndex: 7}})
			_, _ = w.Write(pairs)
		case r.Method == http.MethodGet && r.URL.Query().Has("keys"):
			_, _ = w.Write([]byte(`[]`))
		case r.Method == http.MethodPut && r.URL.Path == "/v1/txn":
			var ops consulapi.TxnOps
			if err := json.NewDecoder(r.Body).Decode(&ops); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			for _, op := range ops {
				if op.KV != nil {
					f.written[op.KV.Key] = op.KV.Value
				}
			}
			_, _ = w.Write([]byte(`{"Results":[],"Errors":null}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Setenv("CONSUL_HTTP_ADDR", strings.TrimPrefix(srv.URL, "http://"))
	t.Setenv("CONSUL_HTTP_TOKEN", "5f1c2b7e-0000-4000-8000-00000000beef")
	t.Setenv("FLEETPLAN_KV_PREFIX", "fptest/")
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1") // no Nomad: these tests never need one
	return f
}

// events returns what the transactions wrote to the registry's event log.
func (f *fakeACLConsul) events() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var b strings.Builder
	for k, v := range f.written {
		if strings.Contains(k, "registry-events/") {
			b.Write(v)
		}
	}
	return b.String()
}

// With ACLs on, a quarantine is recorded as made by the Consul token (its
// description and accessor prefix, never its secret), -actor as a comment,
// like approve, pause, resume and rollback.
func TestRegistryQuarantineActorIsTheToken(t *testing.T) {
	f := newFakeACLConsul(t, `{"AccessorID":"1234abcd-5678-4000-8000-000000000001","SecretID":"5f1c2b7e-0000-4000-8000-00000000beef","Description":"fleetplan-operator"}`)
	stdout, stderr, code := runCLI(t, "", "registry", "quarantine", "rpi-1", "-reason", "fan broken", "-actor", "tester@ci")
	if code != ExitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var evs []registry.Event
	if err := json.Unmarshal([]byte(f.events()), &evs); err != nil || len(evs) != 1 {
		t.Fatalf("events written: %q (%v), want one", f.events(), err)
	}
	want := `token:fleetplan-operator (accessor 1234abcd…), comment "tester@ci"`
	if evs[0].Actor != want || evs[0].Kind != registry.EventQuarantined {
		t.Errorf("event %+v: actor %q, want %q", evs[0], evs[0].Actor, want)
	}
	if strings.Contains(f.events()+stdout+stderr, "beef") {
		t.Error("the token's secret was written or printed")
	}
}

// With ACLs on and a token that cannot be read, quarantine and release fail
// before they change anything, saying which token to set.
func TestRegistryActorUnreadableToken(t *testing.T) {
	for _, args := range [][]string{
		{"registry", "quarantine", "rpi-1", "-reason", "fan broken"},
		{"registry", "release", "rpi-1"},
	} {
		f := newFakeACLConsul(t, "")
		stdout, stderr, code := runCLI(t, "", args...)
		if code != ExitInternal || !strings.Contains(stderr, "CONSUL_HTTP_TOKEN") {
			t.Errorf("%v: exit %d, want %d and an error naming CONSUL_HTTP_TOKEN\n%s%s", args, code, ExitInternal, stdout, stderr)
		}
		f.mu.Lock()
		for _, req := range f.requests {
			if strings.Contains(req, "/v1/kv/") || strings.Contains(req, "/v1/txn") {
				t.Errorf("%v: %s before the actor was known", args, req)
			}
		}
		f.mu.Unlock()
	}
}
