package hcl

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	hcl2 "github.com/hashicorp/hcl/v2"

	"github.com/fleetplan/fleetplan/scheduler"
)

// notifyPolicy is a valid rollout with the given notify blocks.
func notifyPolicy(blocks string) string {
	return `rollout "detector" {
  fleet { selector = "Meta.fleet == \"vision\"" }
  release {
    jobspec = "testdata/app.nomad.hcl"
    version = "2.4.1"
  }
  canary {
    percent = 2
    soak    = "15m"
  }
  wave {
    percent = 100
    soak    = "10m"
  }
  health {
    application { port = "http" }
  }
  rollback { max_failure_percent = 2 }
` + blocks + `
}
`
}

func TestNotifyBlocksDecode(t *testing.T) {
	src := notifyPolicy(`
  notify "webhook" "ops" {
    url     = "https://hooks.example.com/fleet/${env.HOOK_PATH}"
    headers = { Authorization = "Bearer ${env.OPS_HOOK_TOKEN}", X-Fleet = "edge" }
    events  = ["approval-needed", "rollback", "halted"]
    timeout = "20s"
  }
  notify "slack" "team" {
    url = nomad_var("fleetplan/notify", "slack_url")
  }
  notify "log" "audit" {}
  notify "log" "debug" { level = "debug" }
`)
	policies, diags := ParseSource("p.fleet.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(diags) != 0 {
		t.Fatalf("unexpected warnings: %v", diags)
	}
	got := policies[0].Notify
	if len(got) != 4 {
		t.Fatalf("notifiers %+v", got)
	}
	ops := got[0]
	if ops.Type != "webhook" || ops.Name != "ops" || ops.Source != "policy" || ops.Timeout.String() != "20s" ||
		strings.Join(ops.Events, ",") != "approval-needed,rollback,halted" {
		t.Errorf("ops %+v", ops)
	}
	if ops.URL.String() != "https://hooks.example.com/fleet/${env.HOOK_PATH}" || len(ops.URL) != 2 || ops.URL[1].Secret.Env != "HOOK_PATH" {
		t.Errorf("ops url %#v", ops.URL)
	}
	auth := ops.Headers["Authorization"]
	if len(auth) != 2 || auth[0].Literal != "Bearer " || auth[1].Secret == nil || auth[1].Secret.Env != "OPS_HOOK_TOKEN" {
		t.Errorf("Authorization %#v", auth)
	}
	if ops.Headers["X-Fleet"].String() != "edge" || ops.Headers["X-Fleet"].HasSecret() {
		t.Errorf("X-Fleet %#v", ops.Headers["X-Fleet"])
	}
	team := got[1]
	if len(team.URL) != 1 || team.URL[0].Secret == nil || *team.URL[0].Secret != (scheduler.SecretRef{NomadVariable: "fleetplan/notify", Item: "slack_url"}) {
		t.Errorf("team url %#v", team.URL)
	}
	if team.URL.String() != `${nomad_var("fleetplan/notify", "slack_url")}` {
		t.Errorf("team url text %q", team.URL.String())
	}
	if got[2].Type != "log" || len(got[2].Events) != 0 || !got[2].Wants("done") || got[3].Level != "debug" {
		t.Errorf("log notifiers %+v %+v", got[2], got[3])
	}
	if ops.Wants("done") || !ops.Wants("halted") {
		t.Errorf("events filter of ops: %v", ops.Events)
	}
	// The spec round-trips through JSON (the rollout request) with its
	// references.
	b, err := json.Marshal(policies[0].Notify)
	if err != nil {
		t.Fatal(err)
	}
	var back []scheduler.NotifierSpec
	if err := json.Unmarshal(b, &back); err != nil || back[0].Headers["Authorization"].String() != "Bearer ${env.OPS_HOOK_TOKEN}" {
		t.Fatalf("round trip %s: %v %+v", b, err, back)
	}
}

// Each problem of a notify block is reported at its line and column.
func TestNotifyDiagnosticsPositions(t *testing.T) {
	_, diags := ParseFiles("testdata/validate/notify.fleet.hcl")
	type want struct {
		sev     hcl2.DiagnosticSeverity
		summary string
		pos     string
		detail  string
	}
	wants := []want{
		{hcl2.DiagError, "Unknown notifier type", "32:10", `Did you mean "slack"?`},
		{hcl2.DiagError, "Unknown event", "38:34", `Did you mean "rollback"?`},
		{hcl2.DiagError, `Missing required argument "url"`, "41:3", "nomad_var"},
		{hcl2.DiagWarning, "Notifications sent without TLS", "46:11", "hooks.example.com"},
		{hcl2.DiagError, "Unsupported reference", "50:13", `"var"`},
		{hcl2.DiagError, "Unsupported argument", "51:5", `A slack notifier does not take "level"`},
		{hcl2.DiagError, "Duplicate notifier", "54:16", "already defined at"},
		{hcl2.DiagWarning, "Credential written in the policy", "58:17", "env.OPS_HOOK_TOKEN"},
		{hcl2.DiagError, "Secret reference used in a function", "62:11", "not passed to a function"},
	}
	var got []string
	for _, d := range diags {
		got = append(got, fmt.Sprintf("%v %s %d:%d", d.Severity, d.Summary, d.Subject.Start.Line, d.Subject.Start.Column))
	}
	if len(diags) != len(wants) {
		t.Fatalf("got %d diagnostics, want %d:\n%s", len(diags), len(wants), strings.Join(got, "\n"))
	}
	for i, w := range wants {
		d := diags[i]
		pos := fmt.Sprintf("%d:%d", d.Subject.Start.Line, d.Subject.Start.Column)
		if d.Severity != w.sev || d.Summary != w.summary || pos != w.pos || !strings.Contains(d.Detail, w.detail) {
			t.Errorf("diagnostic %d: got %v %q at %s: %s\nwant %v %q at %s containing %q", i, d.Severity, d.Summary, pos, d.Detail, w.sev, w.summary, w.pos, w.detail)
		}
	}
}

func TestNotifyURLRules(t *testing.T) {
	for _, tc := range []struct {
		block, summary string // summary "" means no diagnostic
	}{
		{`notify "webhook" "a" { url = "http://127.0.0.1:8080/hook" }`, ""},
		{`notify "webhook" "a" { url = "http://localhost/hook" }`, ""},
		{`notify "webhook" "a" { url = "http://[::1]:9/hook" }`, ""},
		{`notify "webhook" "a" { url = env.HOOK_URL }`, ""},
		{`notify "webhook" "a" { url = "http://${env.HOST}/x" }`, ""},
		{`notify "webhook" "a" { url = "http://hooks.example.com/${env.P}" }`, "Notifications sent without TLS"},
		{`notify "webhook" "a" { url = "ftp://hooks.example.com/x" }`, "Invalid notifier URL"},
		{`notify "webhook" "a" { url = "hooks.example.com/x" }`, "Invalid notifier URL"},
		{`notify "webhook" "a" { url = "https:///x" }`, "Invalid notifier URL"},
		{`notify "webhook" "a" { url = "" }`, "Empty url"},
		{`notify "slack" "a" { url = "https://hooks.slack.com/services/T0/B0/xyz" }`, "Secret URL written in the policy"},
		{`notify "webhook" "a" { url = env["1BAD"] }`, "Invalid environment variable name"},
		{`notify "webhook" "a" { url = env }`, "Invalid environment reference"},
		{`notify "webhook" "a" { url = nomad_var("", "x") }`, "Invalid function argument"},
		{"notify \"webhook\" \"a\" {\n url = \"https://h.example.com/x\"\n headers = { \"bad header\" = \"x\" }\n}", "Invalid header name"},
		{"notify \"webhook\" \"a\" {\n url = \"https://h.example.com/x\"\n events = []\n}", "No events"},
		{`notify "log" "a" { url = "https://h.example.com/x" }`, "Unsupported argument"},
		{`notify "log" "a" { level = "loud" }`, "Unknown level"},
		{`notify "log" "a b" {}`, "Invalid notifier name"},
		{`notify "log" {}`, "Missing name label"},
	} {
		_, diags := ParseSource("p.fleet.hcl", []byte(notifyPolicy(tc.block)))
		if tc.summary == "" {
			if len(diags) != 0 {
				t.Errorf("%s: unexpected %v", tc.block, diags)
			}
			continue
		}
		if len(diags) != 1 || diags[0].Summary != tc.summary {
			t.Errorf("%s: got %v, want one %q", tc.block, diags, tc.summary)
		}
	}
}

// The policy keeps references only: with the secrets set in the
// environment, neither the decoded policy (what a rollout request stores),
// nor validate's text and JSON output, nor a diagnostic shows a value.
func TestNotifySecretsNeverDecoded(t *testing.T) {
	const token, hook = "tok-v4lue-s3cr3t", "hook-v4lue-s3cr3t"
	t.Setenv("OPS_HOOK_TOKEN", token)
	t.Setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/"+hook)
	src := notifyPolicy(`
  notify "webhook" "ops" {
    url     = "http://hooks.example.com/fleet"
    headers = { Authorization = "Bearer ${env.OPS_HOOK_TOKEN}" }
  }
  notify "slack" "team" {
    url    = env.SLACK_WEBHOOK_URL
    events = ["rollbak"]
  }
`)
	p := NewParser()
	_, diags := p.ParseSource("p.fleet.hcl", []byte(src))
	if len(diags) != 2 {
		t.Fatalf("want the plain-http warning and the unknown event: %v", diags)
	}
	var text strings.Builder
	if err := WriteDiagnostics(&text, p.Files(), diags, false); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(Report(diags))
	// Without the error, the decoded policy itself.
	policies, _ := ParseSource("p.fleet.hcl", []byte(strings.Replace(src, `"rollbak"`, `"rollback"`, 1)))
	if len(policies) != 1 || len(policies[0].Notify) != 2 {
		t.Fatalf("policies %+v", policies)
	}
	pj, _ := json.Marshal(policies)
	for what, out := range map[string]string{"validate text": text.String(), "validate -json": string(js), "the policy as JSON": string(pj), "the policy as Go": fmt.Sprintf("%+v", policies[0].Notify)} {
		if strings.Contains(out, token) || strings.Contains(out, hook) {
			t.Errorf("%s shows a secret value:\n%s", what, out)
		}
	}
	if !strings.Contains(string(pj), `"env":"OPS_HOOK_TOKEN"`) || !strings.Contains(string(pj), `"env":"SLACK_WEBHOOK_URL"`) {
		t.Errorf("the policy lost its references: %s", pj)
	}
}

// notify blocks at the top level of a file apply to each of its rollouts,
// before the rollout's own; a rollout's block may not reuse their names.
func TestNotifyTopLevel(t *testing.T) {
	second := strings.Replace(notifyPolicy(`  notify "log" "own" {}`), `rollout "detector"`, `rollout "tracker"`, 1)
	src := `notify "slack" "team" {
  url = env.SLACK_WEBHOOK_URL
}
` + notifyPolicy("") + second
	policies, diags := ParseSource("p.fleet.hcl", []byte(src))
	if len(diags) != 0 {
		t.Fatalf("diagnostics: %v", diags)
	}
	if len(policies) != 2 || len(policies[0].Notify) != 1 || policies[0].Notify[0].Name != "team" ||
		len(policies[1].Notify) != 2 || policies[1].Notify[0].Name != "team" || policies[1].Notify[1].Name != "own" {
		t.Fatalf("notifiers: %+v / %+v", policies[0].Notify, policies[1].Notify)
	}
	clash := `notify "slack" "team" {
  url = env.SLACK_WEBHOOK_URL
}
` + notifyPolicy(`  notify "log" "team" {}`)
	_, diags = ParseSource("p.fleet.hcl", []byte(clash))
	if len(diags) != 1 || diags[0].Summary != "Duplicate notifier" || diags[0].Subject.Start.Line != 22 || !strings.Contains(diags[0].Detail, "p.fleet.hcl:1") {
		t.Fatalf("clash: %v", diags)
	}
}
