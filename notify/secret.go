package notify

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
)

// Redacted replaces a secret value in errors and logs.
const Redacted = "[redacted]"

// resolver reads the values of secret references, for New.
type resolver struct {
	ctx  context.Context
	opts *Options
	red  *redactor
	// vars caches the Nomad Variables read, by path.
	vars map[string]map[string]string
}

// value resolves a SecretString. Every secret value it reads is added to
// the redactor before it is used anywhere.
func (r *resolver) value(s scheduler.SecretString) (string, error) {
	var b strings.Builder
	for _, p := range s {
		if p.Secret == nil {
			b.WriteString(p.Literal)
			continue
		}
		v, err := r.secret(*p.Secret)
		if err != nil {
			return "", err
		}
		r.red.add(v)
		b.WriteString(v)
	}
	return b.String(), nil
}

func (r *resolver) secret(ref scheduler.SecretRef) (string, error) {
	switch {
	case ref.Env != "":
		v := r.opts.Getenv(ref.Env)
		if v == "" {
			return "", fmt.Errorf("%s is not set in the environment of the controller that runs the rollout; set it there (the shell of `fleetplan apply`, or the controller job's env or template block)", ref)
		}
		return v, nil
	case ref.NomadVariable != "" && ref.Item != "":
		items, err := r.variable(ref.NomadVariable)
		if err != nil {
			return "", fmt.Errorf("%s: %w", ref, err)
		}
		v, ok := items[ref.Item]
		if !ok || v == "" {
			names := make([]string, 0, len(items))
			for k := range items {
				names = append(names, k)
			}
			sort.Strings(names)
			return "", fmt.Errorf("%s: the Nomad Variable %s has no item %q (its items: %s); add it with `nomad var put %s %s=...`",
				ref, ref.NomadVariable, ref.Item, strings.Join(names, ", "), ref.NomadVariable, ref.Item)
		}
		return v, nil
	}
	return "", fmt.Errorf("an empty secret reference; write env.NAME or nomad_var(\"path\", \"item\")")
}

func (r *resolver) variable(path string) (map[string]string, error) {
	if items, ok := r.vars[path]; ok {
		return items, nil
	}
	if r.opts.Variables == nil {
		return nil, errNoVariables
	}
	q := (&nomadapi.QueryOptions{}).WithContext(r.ctx)
	v, _, err := r.opts.Variables.Read(path, q)
	switch {
	case errors.Is(err, nomadapi.ErrVariablePathNotFound):
		return nil, fmt.Errorf("the Nomad Variable %s does not exist (or this token may not read it); create it with `nomad var put %s ITEM=...`, and give the controller's token read access to it", path, path)
	case err != nil:
		return nil, fmt.Errorf("reading the Nomad Variable %s: %w", path, err)
	case v == nil:
		return nil, fmt.Errorf("the Nomad Variable %s does not exist", path)
	}
	// Only the items referenced are redacted (value adds them): the others
	// never leave this map.
	items := map[string]string(v.Items)
	r.vars[path] = items
	return items, nil
}

// redactor replaces secret values in text. It is shared by a Set's
// notifiers and its logger adapter.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
	rep     *strings.Replacer
}

func (r *redactor) add(secret string) {
	if secret == "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	forms := []string{secret, url.PathEscape(secret), url.QueryEscape(secret), strings.Trim(fmt.Sprintf("%q", secret), `"`)}
	for _, f := range forms {
		dup := false
		for _, s := range r.secrets {
			if s == f {
				dup = true
			}
		}
		if !dup {
			r.secrets = append(r.secrets, f)
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	pairs := make([]string, 0, 2*len(r.secrets))
	for _, s := range r.secrets {
		pairs = append(pairs, s, Redacted)
	}
	r.rep = strings.NewReplacer(pairs...)
}

// text returns s with every secret value replaced.
func (r *redactor) text(s string) string {
	if r == nil {
		return s
	}
	r.mu.RLock()
	rep := r.rep
	r.mu.RUnlock()
	if rep == nil {
		return s
	}
	return rep.Replace(s)
}

// err returns err with its text redacted (nil stays nil). The result keeps
// no reference to err, whose fields may hold secrets.
func (r *redactor) err(err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: r.text(err.Error())}
}

type redactedError struct{ msg string }

func (e *redactedError) Error() string { return e.msg }

// redactURL shows only the scheme and host of a URL: webhook URLs (Slack,
// Mattermost, Teams) carry their secret in the path or query.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}
