package jobs

import (
	"errors"
	"net/http"

	"github.com/hashicorp/nomad/api"
)

// responseError returns the Nomad API's error response in err, if any. The
// API returns api.UnexpectedResponseError by value; a pointer is accepted
// too in case a later client version changes that.
func responseError(err error) (api.UnexpectedResponseError, bool) {
	var v api.UnexpectedResponseError
	if errors.As(err, &v) {
		return v, true
	}
	var p *api.UnexpectedResponseError
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	return api.UnexpectedResponseError{}, false
}

// statusCode returns the HTTP status of a Nomad API error response.
func statusCode(err error) (int, bool) {
	if ure, ok := responseError(err); ok && ure.HasStatusCode() {
		return ure.StatusCode(), true
	}
	return 0, false
}

// isNotFound reports whether Nomad answered 404. On the client endpoints
// that the server forwards to a device (/v1/client/metadata), 404 means the
// server has no connection to the device's client ("No path to node"):
// measured on Nomad 1.6.1 both right after the client stopped (while the
// node was still "ready") and once the node was "down". An unknown node ID
// is a 500 there ("Unknown node <id>"), which we look up separately.
func isNotFound(err error) bool {
	code, ok := statusCode(err)
	return ok && code == http.StatusNotFound
}

// Node statuses in which a device's client cannot be reached.
func nodeUnreachable(status string) bool {
	return status == api.NodeStatusDown || status == api.NodeStatusDisconnected
}
