package hcl

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	hcl2 "github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Rules of the notify blocks:
//
//	notify "webhook" "ops" {
//	  url     = "https://hooks.example.com/fleet"
//	  headers = { Authorization = "Bearer ${env.OPS_HOOK_TOKEN}" }
//	  events  = ["approval-needed", "rollback"]
//	}
//
// url and header values may reference secrets: env.NAME (an environment
// variable of the controller that runs the rollout) and
// nomad_var("path", "item") (an item of a Nomad Variable). The decoder keeps
// the references (scheduler.SecretString) and never reads the values: the
// notify package does, when it builds the notifier.

var (
	notifierNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
	headerNameRe   = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
	// credentialHeaderRe names headers that usually carry a credential.
	credentialHeaderRe = regexp.MustCompile(`(?i)(authorization|token|secret|api-?key|password)`)
	// slackHookRe recognises a chat incoming-webhook URL whose path is its
	// secret (Slack: /services/T.../B.../xxx, Mattermost: /hooks/xxx).
	slackHookRe = regexp.MustCompile(`^/(services|hooks)/.+`)
)

var logLevels = []string{"info", "trace", "debug", "warn", "error"}

// attrsByType are the attributes each notifier type takes besides events.
var attrsByType = map[string][]string{
	scheduler.NotifierWebhook: {"url", "headers", "timeout"},
	scheduler.NotifierSlack:   {"url", "timeout"},
	scheduler.NotifierLog:     {"level"},
}

// notifyBlocks decodes notify blocks (of a rollout, or of the file's top
// level); their names must differ from each other and from inherited's
// (the file's, for a rollout).
func (d *decoder) notifyBlocks(blocks []*hcl2.Block, inherited []scheduler.NotifierSpec) []scheduler.NotifierSpec {
	var out []scheduler.NotifierSpec
	names := map[string]hcl2.Range{}
	for _, s := range inherited {
		names[s.Name] = s.Range
	}
	for _, b := range blocks {
		typ, name := b.Labels[0], b.Labels[1]
		ok := true
		if !slices.Contains(scheduler.NotifierTypes, typ) {
			d.add(errNotifierType(b.LabelRanges[0], typ))
			ok = false
		}
		if !notifierNameRe.MatchString(name) {
			d.add(errNotifierName(b.LabelRanges[1], name))
			ok = false
		} else if first, dup := names[name]; dup {
			d.add(errDuplicateNotifier(b.LabelRanges[1], name, first))
			ok = false
		} else {
			names[name] = b.DefRange
		}
		c := d.content(b.Body, notifySpec)
		if !ok {
			continue
		}
		out = append(out, d.notify(b, c, typ, name))
	}
	return out
}

func (d *decoder) notify(b *hcl2.Block, c *hcl2.BodyContent, typ, name string) scheduler.NotifierSpec {
	s := scheduler.NotifierSpec{Type: typ, Name: name, Source: "policy", Range: b.DefRange}
	for _, a := range c.Attributes {
		if a.Name != "events" && !slices.Contains(attrsByType[typ], a.Name) {
			d.add(errNotifierAttr(a.NameRange, typ, a.Name))
		}
	}
	if a := c.Attributes["events"]; a != nil {
		s.Events = d.notifyEvents(a)
	}
	if typ == scheduler.NotifierLog {
		if a := c.Attributes["level"]; a != nil {
			if v, ok := d.str(a); ok {
				if !slices.Contains(logLevels, v) {
					d.add(errUnknownEnum(a.Expr.Range(), "level", v, logLevels))
				} else {
					s.Level = v
				}
			}
		}
		return s
	}
	if a := c.Attributes["timeout"]; a != nil {
		s.Timeout = d.positiveDuration(a, "notify", 0)
	}
	if a := d.required(c, b, "url"); a != nil {
		if v, ok := d.secretString(a); ok {
			s.URL = v
			d.checkNotifyURL(a, typ, v)
		}
	}
	if a := c.Attributes["headers"]; a != nil && typ == scheduler.NotifierWebhook {
		s.Headers = d.secretHeaders(a)
	}
	return s
}

func (d *decoder) notifyEvents(a *hcl2.Attribute) []string {
	list, ok := d.stringList(a)
	if !ok {
		return nil
	}
	if len(list) == 0 {
		d.add(errNoEvents(a.Expr.Range()))
		return nil
	}
	var out []string
	for i, e := range list {
		if !slices.Contains(scheduler.NotifyEvents, e) {
			d.add(errUnknownEvent(listItemRange(a.Expr, i), e))
			continue
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// listItemRange is the range of the i-th item of a list constructor, or
// the whole expression.
func listItemRange(expr hcl2.Expression, i int) hcl2.Range {
	if t, ok := expr.(*hclsyntax.TupleConsExpr); ok && i < len(t.Exprs) {
		return t.Exprs[i].Range()
	}
	return expr.Range()
}

// checkNotifyURL checks what can be checked of a URL before its secrets
// are known: the literal text before the first reference.
func (d *decoder) checkNotifyURL(a *hcl2.Attribute, typ string, v scheduler.SecretString) {
	r := a.Expr.Range()
	prefix := v.LiteralPrefix()
	if !v.HasSecret() && strings.TrimSpace(prefix) == "" {
		d.add(errEmptyString(r, "url"))
		return
	}
	scheme, rest, found := strings.Cut(prefix, "://")
	if !found {
		if !v.HasSecret() || prefix != "" {
			d.add(errNotifyURL(r, "it must start with http:// or https://"))
		}
		return // wholly a reference: checked when the notifier is built
	}
	if scheme != "http" && scheme != "https" {
		d.add(errNotifyURL(r, fmt.Sprintf("the scheme is %q; it must be http or https", scheme)))
		return
	}
	host, path, hostDone := strings.Cut(rest, "/")
	if !hostDone && v.HasSecret() {
		return // the host is not all literal
	}
	if !hostDone {
		path = ""
	}
	if !v.HasSecret() {
		u, err := url.Parse(prefix)
		if err != nil {
			d.add(errNotifyURL(r, fmt.Sprintf("it is not a URL (%v)", err)))
			return
		}
		host = u.Host
	}
	hostname := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		hostname = h
	}
	if hostname == "" {
		d.add(errNotifyURL(r, "it has no host"))
		return
	}
	if scheme == "http" && !isLoopback(hostname) {
		d.add(warnPlainHTTP(r, hostname))
	}
	if typ == scheduler.NotifierSlack && !v.HasSecret() && slackHookRe.MatchString("/"+path) {
		d.add(warnLiteralHookURL(r))
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (d *decoder) secretHeaders(a *hcl2.Attribute) map[string]scheduler.SecretString {
	v, refs, ok := d.evalSecret(a)
	if !ok {
		return nil
	}
	m, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		d.add(errValueType(a.Expr.Range(), a.Name, "a map of strings", v.Type().FriendlyName(), exampleFor("notify", "headers"), nil))
		return nil
	}
	out := map[string]scheduler.SecretString{}
	for it := m.ElementIterator(); it.Next(); {
		k, e := it.Element()
		key := k.AsString()
		r := keyRange(a.Expr, key)
		if e.IsNull() {
			d.add(errNullValue(r, "headers."+key))
			continue
		}
		if !headerNameRe.MatchString(key) {
			d.add(errHeaderName(r, key))
			continue
		}
		s, ok := splitSecrets(e.AsString(), refs)
		if !ok {
			d.add(errSecretTransformed(r))
			continue
		}
		if !s.HasSecret() && credentialHeaderRe.MatchString(key) && strings.TrimSpace(s.String()) != "" {
			d.add(warnLiteralCredential(r, key))
		}
		out[key] = s
	}
	return out
}

func (d *decoder) secretString(a *hcl2.Attribute) (scheduler.SecretString, bool) {
	v, refs, ok := d.evalSecret(a)
	if !ok {
		return nil, false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		d.typeError(a, "a string", v, nil)
		return nil, false
	}
	out, ok := splitSecrets(s.AsString(), refs)
	if !ok {
		d.add(errSecretTransformed(a.Expr.Range()))
		return nil, false
	}
	return out, true
}

// Secret references evaluate to placeholders: NUL, "fpsecret", the index
// of the reference, NUL. NUL cannot be written in a policy string without
// an escape, and splitSecrets turns placeholders back into references.
const placeholderMark = "\x00fpsecret"

func placeholder(i int) string { return placeholderMark + strconv.Itoa(i) + "\x00" }

// evalSecret evaluates an attribute where env.NAME and
// nomad_var("path", "item") may appear; the value holds placeholders for
// them, listed in refs.
func (d *decoder) evalSecret(a *hcl2.Attribute) (cty.Value, []scheduler.SecretRef, bool) {
	var refs []scheduler.SecretRef
	env := map[string]cty.Value{}
	ok := true
	for _, t := range a.Expr.Variables() {
		if t.RootName() != "env" {
			d.add(errSecretVariable(t.SourceRange(), t.RootName()))
			ok = false
			continue
		}
		name := ""
		if len(t) >= 2 {
			switch s := t[1].(type) {
			case hcl2.TraverseAttr:
				name = s.Name
			case hcl2.TraverseIndex:
				if s.Key.Type() == cty.String && s.Key.IsKnown() && !s.Key.IsNull() {
					name = s.Key.AsString()
				}
			}
		}
		if name == "" || len(t) > 2 {
			d.add(errEnvReference(t.SourceRange()))
			ok = false
			continue
		}
		if !envNameRe.MatchString(name) {
			d.add(errEnvName(t.SourceRange(), name))
			ok = false
			continue
		}
		if _, seen := env[name]; !seen {
			env[name] = cty.StringVal(placeholder(len(refs)))
			refs = append(refs, scheduler.SecretRef{Env: name})
		}
	}
	if !ok {
		return cty.NilVal, nil, false
	}
	nomadVar := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "item", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			path, item := strings.Trim(args[0].AsString(), "/"), args[1].AsString()
			if path == "" || strings.ContainsFunc(path, isSpace) {
				return cty.NilVal, function.NewArgErrorf(0, "the Nomad Variable path must be a path such as \"fleetplan/notify\"")
			}
			if item == "" {
				return cty.NilVal, function.NewArgErrorf(1, "the item must name a key of the Nomad Variable, such as \"slack_url\"")
			}
			refs = append(refs, scheduler.SecretRef{NomadVariable: path, Item: item})
			return cty.StringVal(placeholder(len(refs) - 1)), nil
		},
	})
	ctx := &hcl2.EvalContext{
		Variables: map[string]cty.Value{"env": cty.ObjectVal(env)},
		Functions: map[string]function.Function{"jsonencode": stdlib.JSONEncodeFunc, "nomad_var": nomadVar},
	}
	if len(env) == 0 {
		ctx.Variables["env"] = cty.EmptyObjectVal
	}
	v, diags := a.Expr.Value(ctx)
	for _, dg := range diags {
		// The text writer would print the placeholders of the references
		// ("with env.X as ..."): there are no values to show.
		dg.Expression, dg.EvalContext = nil, nil
	}
	d.add(diags...)
	if diags.HasErrors() {
		return cty.NilVal, nil, false
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		d.add(errUnknownValue(a.Expr.Range(), a.Name))
		return cty.NilVal, nil, false
	}
	if v.IsNull() {
		d.add(errNullValue(a.Expr.Range(), a.Name))
		return cty.NilVal, nil, false
	}
	return v, refs, true
}

// splitSecrets turns a string with placeholders into a SecretString; false
// when a placeholder was taken apart (by a function such as jsonencode).
func splitSecrets(s string, refs []scheduler.SecretRef) (scheduler.SecretString, bool) {
	var out scheduler.SecretString
	for s != "" {
		i := strings.Index(s, placeholderMark)
		if i < 0 {
			break
		}
		if i > 0 {
			out = append(out, scheduler.StringPart{Literal: s[:i]})
		}
		rest := s[i+len(placeholderMark):]
		end := strings.IndexByte(rest, 0)
		if end < 0 {
			return nil, false
		}
		n, err := strconv.Atoi(rest[:end])
		if err != nil || n < 0 || n >= len(refs) {
			return nil, false
		}
		ref := refs[n]
		out = append(out, scheduler.StringPart{Secret: &ref})
		s = rest[end+1:]
	}
	if strings.Contains(s, "fpsecret") || strings.ContainsRune(s, 0) {
		return nil, false
	}
	if s != "" {
		out = append(out, scheduler.StringPart{Literal: s})
	}
	return out, true
}

// ---- diagnostics -----------------------------------------------------------

func errNotifierType(subject hcl2.Range, typ string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%q is not a notifier type.", typ)
	if s := suggest(typ, scheduler.NotifierTypes); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	detail += fmt.Sprintf(" The types are %s: notify \"webhook\" \"ops\" { url = \"https://hooks.example.com/fleet\" }.", quotedList(scheduler.NotifierTypes, "and"))
	return newError(subject, "Unknown notifier type", detail)
}

func errNotifierName(subject hcl2.Range, name string) *hcl2.Diagnostic {
	return newError(subject, "Invalid notifier name",
		fmt.Sprintf("The second label of a notify block, %q, names the notifier in logs and errors. Use 1 to 63 letters, digits, \"-\" or \"_\", starting with a letter or digit, for example \"ops\".", name))
}

func errDuplicateNotifier(subject hcl2.Range, name string, first hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Duplicate notifier",
		fmt.Sprintf("A notifier named %q is already defined at %s. Each notify block of a rollout, and of the top level of its file, needs its own name.", name, shortRange(first)))
}

func errNotifierAttr(subject hcl2.Range, typ, name string) *hcl2.Diagnostic {
	return newError(subject, "Unsupported argument",
		fmt.Sprintf("A %s notifier does not take %q. It takes %s.", typ, name, quotedList(append([]string{"events"}, attrsByType[typ]...), "and")))
}

func errNoEvents(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "No events",
		fmt.Sprintf("events = [] subscribes the notifier to nothing. Remove the line to be told about every event, or list some of %s.", quotedList(scheduler.NotifyEvents, "and")))
}

func errUnknownEvent(subject hcl2.Range, event string) *hcl2.Diagnostic {
	detail := fmt.Sprintf("%q is not a notification event.", event)
	if s := suggest(event, scheduler.NotifyEvents); s != "" {
		detail += fmt.Sprintf(" Did you mean %q?", s)
	}
	detail += fmt.Sprintf(" The events are %s.", quotedList(scheduler.NotifyEvents, "and"))
	return newError(subject, "Unknown event", detail)
}

func errNotifyURL(subject hcl2.Range, why string) *hcl2.Diagnostic {
	return newError(subject, "Invalid notifier URL",
		fmt.Sprintf("The notifier's url is not usable: %s. For example: url = \"https://hooks.example.com/fleet\".", why))
}

func warnPlainHTTP(subject hcl2.Range, host string) *hcl2.Diagnostic {
	return newWarning(subject, "Notifications sent without TLS",
		fmt.Sprintf("The url sends notifications to %s over plain http://: anyone on the path can read them and the headers. Use https://, or http:// only to a loopback address.", host))
}

func warnLiteralHookURL(subject hcl2.Range) *hcl2.Diagnostic {
	return newWarning(subject, "Secret URL written in the policy",
		"An incoming-webhook URL is its own credential: whoever reads it can post. Reference it instead, for example url = env.SLACK_WEBHOOK_URL or url = nomad_var(\"fleetplan/notify\", \"slack_url\"), so that it stays out of the policy file.")
}

func warnLiteralCredential(subject hcl2.Range, key string) *hcl2.Diagnostic {
	return newWarning(subject, "Credential written in the policy",
		fmt.Sprintf("The header %s looks like a credential written as text. Reference it instead, for example %s = \"Bearer ${env.OPS_HOOK_TOKEN}\", so that it stays out of the policy file.", key, key))
}

func errHeaderName(subject hcl2.Range, key string) *hcl2.Diagnostic {
	return newError(subject, "Invalid header name",
		fmt.Sprintf("%q is not an HTTP header name: use letters, digits and \"-\", for example \"X-Fleet-Token\".", key))
}

func errSecretVariable(subject hcl2.Range, root string) *hcl2.Diagnostic {
	return newError(subject, "Unsupported reference",
		fmt.Sprintf("%q is not something a notifier can reference. url and header values may reference an environment variable of the controller, env.NAME, or an item of a Nomad Variable, nomad_var(\"fleetplan/notify\", \"slack_url\").", root))
}

func errEnvReference(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Invalid environment reference",
		"Reference one environment variable by name: env.OPS_HOOK_TOKEN.")
}

func errSecretTransformed(subject hcl2.Range) *hcl2.Diagnostic {
	return newError(subject, "Secret reference used in a function",
		"A secret reference (env.NAME or nomad_var(...)) can be written as a value or inside a string, as in \"Bearer ${env.OPS_HOOK_TOKEN}\", but not passed to a function: its value is only known when the notifier is built.")
}
