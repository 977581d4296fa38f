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

// Invariant I11, the agent is not an open door:
//
//   - every endpoint but /v1/health answers only a caller that presents the
//     agent's token (TokenHeader: "Bearer <token>"); the token is made at
//     start (32 random bytes, hex) and given to the device's Consul agent
//     in the definitions of the checks the agent registers (the HTTP
//     check's Header field), so Consul, and whoever may read those check
//     definitions in Consul, can call them; anyone else gets 401, and in
//     particular never makes the agent run a functional probe;
//   - paths taken from Consul KV (health_path, the functional probe's
//     path) must be plain absolute paths (ValidProbePath): no scheme, no
//     host part, no "//", "@", "\" or control characters;
//   - the URLs the agent fetches are built from the instance's own address
//     and port (instanceURL), and redirects are not followed, so no answer
//     of another host is ever published in a check output.
//
// A token rather than a loopback listener: on a real device Consul calls
// the checks on the node's address, and on the dev cluster each device is
// its own loopback address (127.0.0.2, ...) whose Consul agent calls its
// own device agent there; a token works the same in both.

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

// tokenHeaders are the headers of a check definition that carry token.
func tokenHeaders(token string) map[string][]string {
	if token == "" {
		return nil
	}
	return map[string][]string{TokenHeader: {tokenScheme + token}}
}

// requireToken answers 401 to a request without the token, except for the
// open paths.
func requireToken(token string, next http.Handler, open ...string) http.Handler {
	want := []byte(tokenScheme + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, p := range open {
			if r.URL.Path == p {
				next.ServeHTTP(w, r)
				return
			}
		}
		got := []byte(r.Header.Get(TokenHeader))
		if token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fleetplan-agent"`)
			writeText(w, http.StatusUnauthorized, "critical: the fleetplan agent answers only the checks it registered (missing or wrong token)\n")
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
