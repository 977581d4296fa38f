package agent

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Invariant I11, the agent is not an open door, and holds no secret in
// Consul:
//
//   - no check definition the agent registers carries a secret (Consul
//     shows definitions, headers included, to whoever may read the node's
//     or service's checks): the probe endpoints Consul calls
//     (/v1/probe/...) need no token, and each runs its probe at most once
//     per Config.ProbeMinAge for a given query (probeCache), so nobody
//     makes the agent probe much more often than its own checks do, and
//     an answer says no more than the check output Consul already shows;
//     a query naming no instance of this device runs nothing;
//   - /v1/metrics and /v1/status answer only a caller that presents the
//     agent's token (TokenHeader: "Bearer <token>", 32 random bytes, hex,
//     made at start unless configured), which is given to nobody else;
//   - paths taken from Consul KV (health_path, the functional probe's
//     path) must be plain absolute paths (ValidProbePath): no scheme, no
//     host part, no "//", "@", "\" or control characters;
//   - the URLs the agent fetches are built from the instance's own address
//     and port (instanceURL), and redirects are not followed, so no answer
//     of another host is ever published in a check output.
//
// The agent listens on the node's address: on a real device Consul calls
// the checks there, and on the dev cluster each device is its own loopback
// address (127.0.0.2, ...) whose Consul agent calls its own device agent.
// Its Consul and Nomad ACL tokens come from its environment (the job's
// template renders them from a Nomad Variable) and are only ever sent to
// Consul and Nomad.

// TokenHeader is the request header that carries the agent's token.
const TokenHeader = "Authorization"

// tokenScheme prefixes the token in TokenHeader.
const tokenScheme = "Bearer "

// newToken returns 32 random bytes, hex-encoded.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("making the agent's token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// requireToken answers 401 to a request without the token.
func requireToken(token string, next http.Handler) http.Handler {
	want := []byte(tokenScheme + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get(TokenHeader))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleetplan-agent"`)
			writeText(w, http.StatusUnauthorized, "the fleetplan agent answers this endpoint only with its token (missing or wrong token)\n")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ValidProbePath checks a request path that came through Consul KV (a
// policy's health path or functional probe path): an absolute path with an
// optional query, and nothing that could name another host: no scheme, no
// "//" (a network-path reference), no "@" (user info), no "\" (which some
// clients read as "/"), no control characters or spaces.
func ValidProbePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("the path is empty")
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q does not start with \"/\"", p)
	case strings.HasPrefix(p, "//"), strings.Contains(p, "://"):
		return fmt.Errorf("path %q names a host; only a path on the instance is allowed", p)
	case strings.Contains(p, "@"):
		return fmt.Errorf("path %q contains \"@\" (user info of another host); only a path on the instance is allowed", p)
	case strings.Contains(p, `\`):
		return fmt.Errorf("path %q contains a backslash", p)
	}
	for _, r := range p {
		if r < 0x21 || r == 0x7f {
			return fmt.Errorf("path %q contains a control character or a space", p)
		}
	}
	u, err := url.ParseRequestURI(p)
	if err != nil {
		return fmt.Errorf("path %q is not a request path: %v", p, err)
	}
	if u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" {
		return fmt.Errorf("path %q names a host; only a path on the instance is allowed", p)
	}
	return nil
}

// instanceURL is the URL of path on the instance: its own address and
// port, never a host from the path (ValidProbePath has accepted path).
func instanceURL(in Instance, path string) string {
	u := url.URL{Scheme: "http", Host: in.HostPort()}
	p, q, _ := strings.Cut(path, "?")
	u.Path, u.RawQuery = p, q
	return u.String()
}

// noRedirects keeps the agent's HTTP client on the instance: a redirect is
// the answer, never followed (to another host it would be published).
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
