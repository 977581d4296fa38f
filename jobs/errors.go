package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/scheduler"
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

// isControlPlaneError reports whether err says nothing about a device: the
// Nomad server answered 5xx or 429 (a leader election, a server
// overloaded), or did not answer at all (a timeout, a refused or reset
// connection, a connection closed mid-answer). Invariant I5: such errors
// are retried and then pause the rollout, never fail a device. The caller
// has already mapped what does say something about the device (404 "No
// path to node" on client endpoints, a node that is down) to
// scheduler.ErrDeviceOffline; this looks at types and status codes only.
func isControlPlaneError(err error) bool {
	if err == nil || errors.Is(err, scheduler.ErrDeviceOffline) {
		return false
	}
	if code, ok := statusCode(err); ok {
		return code >= http.StatusInternalServerError || code == http.StatusTooManyRequests
	}
	var ne net.Error // *url.Error, *net.OpError, timeouts
	if errors.As(err, &ne) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded)
}

// controlPlane wraps err with scheduler.ErrControlPlane when it is a
// control-plane error (isControlPlaneError) and ctx, the caller's own
// context, is still live: a cancelled caller gets its error unchanged.
func controlPlane(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, scheduler.ErrControlPlane) || !isControlPlaneError(err) {
		return err
	}
	return fmt.Errorf("%w: %w", scheduler.ErrControlPlane, err)
}
