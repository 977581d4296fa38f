package operator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	consulapi "github.com/hashicorp/consul/api"
)

// Actor names who makes a request. With Consul ACLs on, it is the Consul
// token the request is written with (requests are Consul KV writes, so that
// token is what authorizes them): "token:<description> (accessor
// 1234abcd…)", and given (-actor, or user@host by default) is only a
// comment recorded alongside. With ACLs off, it is given. The token's
// secret is never read into it; an ACL error other than "ACLs are off"
// fails the request rather than record free text as the actor.
func (o *Operator) Actor(ctx context.Context, given string) (string, error) {
	if o.Consul == nil {
		return given, nil
	}
	tok, _, err := o.Consul.ACL().TokenReadSelf((&consulapi.QueryOptions{}).WithContext(ctx))
	if err != nil {
		if aclDisabled(err) {
			return given, nil
		}
		return "", fmt.Errorf("reading the Consul token of this request to record who makes it (set CONSUL_HTTP_TOKEN to your operator token): %w", err)
	}
	return tokenActor(tok.Description, tok.AccessorID, given), nil
}

// aclDisabled reports whether Consul answered that its ACLs are off.
func aclDisabled(err error) bool {
	var se consulapi.StatusError
	if errors.As(err, &se) && strings.Contains(se.Body, "ACL support disabled") {
		return true
	}
	return strings.Contains(err.Error(), "ACL support disabled")
}

// tokenActor is the recorded actor of a token: its description and the
// first 8 characters of its accessor ID (never its secret), with comment.
func tokenActor(description, accessor, comment string) string {
	if len(accessor) > 8 {
		accessor = accessor[:8] + "…"
	}
	name := strings.TrimSpace(description)
	if name == "" {
		name = "(no description)"
	}
	s := fmt.Sprintf("token:%s (accessor %s)", name, accessor)
	if comment = strings.TrimSpace(comment); comment != "" {
		s += fmt.Sprintf(", comment %q", comment)
	}
	return s
}
