package command

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/fleetplan/fleetplan/operator"
)

func TestReorderArgs(t *testing.T) {
	app := App()
	cases := []struct{ in, want string }{
		{"validate FILE -json", "validate -json FILE"},
		{"validate -json FILE", "validate -json FILE"},
		{"validate FILE -log-level debug -json", "-log-level debug validate -json FILE"},
		{"-no-color validate FILE", "validate -no-color FILE"},
		{"status -no-color", "-no-color status"},
		{"registry quarantine DEV -reason overheats -address http://n:4646", "registry quarantine -reason overheats -address http://n:4646 DEV"},
		{"-address http://n:4646 approve web -m ok", "approve -address http://n:4646 -m ok web"},
		{"report web -run=abc -runs", "report -run=abc -runs web"},
		{"fmt -check -", "fmt -check -"},
		{"validate -- -odd.hcl", "validate -- -odd.hcl"},
		{"status -h", "status -h"},
		{"-h", "-h"},
	}
	for _, tc := range cases {
		got := strings.Join(reorderArgs(app, append([]string{"fleetplan"}, strings.Fields(tc.in)...))[1:], " ")
		if got != tc.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidateJSONAfterFile(t *testing.T) {
	stdout, stderr, code := runCLI(t, "", "validate", "../examples", "-json")
	if code != ExitOK || !strings.Contains(stdout, `"valid": true`) {
		t.Fatalf("validate DIR -json: exit %d\n%s%s", code, stdout, stderr)
	}
}

// The connection flags reach the clients' configuration; what is not set
// stays the environment's.
func TestConnectionFlagsOverrideEnvironment(t *testing.T) {
	t.Setenv("NOMAD_ADDR", "http://env-nomad:4646")
	t.Setenv("NOMAD_REGION", "env-region")
	t.Setenv("CONSUL_HTTP_ADDR", "env-consul:8500")
	t.Setenv("FLEETPLAN_KV_PREFIX", "")
	var got operator.Settings
	app := App()
	for _, c := range app.Commands {
		if c.Name == "status" {
			c.Action = func(*cli.Context) error { got = operator.CurrentSettings(); return nil }
		}
	}
	err := RunApp(app, []string{"fleetplan", "status", "-address", "http://flag-nomad:4646", "-namespace", "team-a", "-tls-skip-verify", "-consul-token", "secret", "-kv-prefix", "test/"})
	if err != nil {
		t.Fatal(err)
	}
	nc := func() string { operator.Configure(got); return operator.NomadConfig().Address }()
	cfg := operator.NomadConfig()
	if nc != "http://flag-nomad:4646" || cfg.Region != "env-region" || cfg.Namespace != "team-a" || !cfg.TLSConfig.Insecure {
		t.Errorf("Nomad config: address %s region %s namespace %s insecure %v", cfg.Address, cfg.Region, cfg.Namespace, cfg.TLSConfig.Insecure)
	}
	cc := operator.ConsulConfig()
	if cc.Address != "env-consul:8500" || cc.Token != "secret" {
		t.Errorf("Consul config: address %s, token set %v", cc.Address, cc.Token == "secret")
	}
	if got.KVPrefix != "test/" {
		t.Errorf("kv prefix %q", got.KVPrefix)
	}
	// Offline commands have no connection flags.
	if _, stderr, code := runCLI(t, "", "validate", "-address", "x", "../examples"); code != ExitUsage || !slices.ContainsFunc([]string{stderr}, func(s string) bool { return strings.Contains(s, "address") }) {
		t.Errorf("validate -address: exit %d: %s", code, stderr)
	}
	operator.Configure(operator.Settings{})
}

// Backquoted words in a flag's usage become its placeholder in the help
// (urfave/cli): only a deliberate one, a single upper-case word on a flag
// that takes a value, may be backquoted.
func TestFlagUsagePlaceholders(t *testing.T) {
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			p := strings.TrimSpace(path + " " + c.Name)
			for _, f := range c.Flags {
				dg, ok := f.(cli.DocGenerationFlag)
				if !ok {
					continue
				}
				u := dg.GetUsage()
				n := strings.Count(u, "`")
				if n == 0 {
					continue
				}
				_, rest, _ := strings.Cut(u, "`")
				ph, _, _ := strings.Cut(rest, "`")
				if n != 2 || !dg.TakesValue() || ph != strings.ToUpper(ph) || strings.ContainsAny(ph, " -") {
					t.Errorf("%s -%s: backquotes in %q make the placeholder %q", p, f.Names()[0], u, ph)
				}
			}
			walk(p, c.Subcommands)
		}
	}
	walk("", App().Commands)
}

// /dev/null is a character device, not a terminal.
func TestDevNullIsNoTerminal(t *testing.T) {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no %s: %v", os.DevNull, err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Errorf("%s is taken for a terminal", os.DevNull)
	}
}

// Only a tagged module version is the version; a pseudo-version or a
// modified tree gives baseVersion-dev with the revision.
func TestIsRelease(t *testing.T) {
	for mv, want := range map[string]bool{
		"v1.2.3": true, "v0.1.0": true, "v1.2.3-rc.1": true,
		"": false, "(devel)": false, "v0.0.0-20261201174851-1d35ad59e060": false,
		"v1.2.4-0.20261201174851-1d35ad59e060": false, "v1.2.3+dirty": false,
	} {
		if got := isRelease(mv); got != want {
			t.Errorf("isRelease(%q) = %v", mv, got)
		}
	}
}
