package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// ParseFlags turns apply's -notify flags into specs. A flag is TYPE or
// TYPE:key=value,key=value with the keys
//
//	url      (webhook, slack) the URL, or env.NAME to read it from the
//	         environment (keeping a secret URL out of the process arguments)
//	timeout  (webhook, slack) per delivery, e.g. 30s
//	level    (log) trace, debug, info, warn or error
//	events   events separated by "+", e.g. rollback+halted+done
//	name     the notifier's name (default flag1, flag2, ...)
//
// for example "log", "webhook:url=https://hooks.example.com/x" or
// "slack:url=env.SLACK_WEBHOOK_URL,events=approval-needed+rollback".
// Errors never repeat a url's value.
func ParseFlags(flags []string) ([]scheduler.NotifierSpec, error) {
	var out []scheduler.NotifierSpec
	for i, f := range flags {
		s, err := parseFlag(f, i+1)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

func parseFlag(flag string, n int) (scheduler.NotifierSpec, error) {
	typ, rest, _ := strings.Cut(flag, ":")
	typ = strings.TrimSpace(typ)
	s := scheduler.NotifierSpec{Type: typ, Name: fmt.Sprintf("flag%d", n), Source: "flag"}
	what := fmt.Sprintf("-notify %s (flag %d)", typ, n)
	if !slices.Contains(scheduler.NotifierTypes, typ) {
		return s, fmt.Errorf("%s: unknown notifier type %q; the types are %s", what, typ, strings.Join(scheduler.NotifierTypes, ", "))
	}
	if rest != "" {
		for _, kv := range strings.Split(rest, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok {
				return s, fmt.Errorf("%s: %q is not key=value (keys: url, timeout, level, events, name)", what, k)
			}
			switch {
			case k == "url" && typ != scheduler.NotifierLog:
				if name, isEnv := strings.CutPrefix(v, "env."); isEnv {
					s.URL = scheduler.SecretString{{Secret: &scheduler.SecretRef{Env: name}}}
				} else {
					s.URL = scheduler.Literal(v)
				}
			case k == "timeout" && typ != scheduler.NotifierLog:
				d, err := time.ParseDuration(v)
				if err != nil || d <= 0 {
					return s, fmt.Errorf("%s: timeout %q is not a positive duration such as 30s", what, v)
				}
				s.Timeout = d
			case k == "level" && typ == scheduler.NotifierLog:
				s.Level = v
			case k == "events":
				for _, e := range strings.Split(v, "+") {
					if !slices.Contains(scheduler.NotifyEvents, e) {
						return s, fmt.Errorf("%s: unknown event %q; the events are %s", what, e, strings.Join(scheduler.NotifyEvents, ", "))
					}
					s.Events = append(s.Events, e)
				}
			case k == "name":
				s.Name = v
			default:
				return s, fmt.Errorf("%s: a %s notifier takes no %q", what, typ, k)
			}
		}
	}
	if typ != scheduler.NotifierLog && len(s.URL) == 0 {
		return s, fmt.Errorf("%s: no url; write %s:url=https://... or %s:url=env.NAME", what, typ, typ)
	}
	return s, nil
}
