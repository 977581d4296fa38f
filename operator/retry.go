package operator

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
)

// retryTransport retries the requests fleetplan makes to Nomad and Consul
// when the control plane fails them transiently (invariant I5): a 5xx or
// 429 answer ("rpc error: leader unavailable" during an election), a
// refused connection, and, for reads, a connection dropped before the
// answer. A write whose connection dropped after it was sent is not resent
// here (it may have been applied): it surfaces, and the controller's own
// budget retries the idempotent or check-and-set action. Attempts are
// bounded (RetryAttempts) and spaced by a capped backoff; the request's
// context ends them.
type retryTransport struct {
	next     http.RoundTripper
	attempts int
	base     time.Duration
	max      time.Duration
}

// RetryAttempts is how many times a request is tried.
const RetryAttempts = 5

func newRetryTransport(next http.RoundTripper) *retryTransport {
	if next == nil {
		next = http.DefaultTransport
	}
	return &retryTransport{next: next, attempts: RetryAttempts, base: 100 * time.Millisecond, max: 2 * time.Second}
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	read := req.Method == http.MethodGet || req.Method == http.MethodHead
	wait := t.base
	for attempt := 1; ; attempt++ {
		resp, err := t.next.RoundTrip(req)
		retry := false
		switch {
		case err != nil:
			retry = errors.Is(err, syscall.ECONNREFUSED) || (read && transientNetError(err))
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			// (An offline device is Nomad's 404 "No path to node", read
			// by the Nomad adapter: never retried here.)
			retry = true
		}
		if !retry || attempt >= t.attempts || req.Context().Err() != nil {
			return resp, err
		}
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return resp, err
			}
			body, gerr := req.GetBody()
			if gerr != nil {
				return resp, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		if !sleepCtx(req.Context(), wait) {
			return nil, req.Context().Err()
		}
		wait = min(2*wait, t.max)
	}
}

func transientNetError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		(errors.As(err, &ne) && ne.Timeout())
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
