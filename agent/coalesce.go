package agent

import (
	"bytes"
	"net/http"
	"sync"
	"time"
)

// DefaultProbeMinAge is how old the last answer of a probe endpoint must be
// before a new request runs the probe again (Config.ProbeMinAge).
const DefaultProbeMinAge = 500 * time.Millisecond

// maxProbeEntries bounds the remembered answers (one per path and query;
// a query naming no instance is answered at once and forgotten first).
const maxProbeEntries = 256

// probeCache makes every probe endpoint run its probe at most once per
// minAge for a given path and query, one run at a time: callers within
// that age, or waiting for the run in flight, get the same answer. The
// probe endpoints need no token (invariant I11: no secret sits in a check
// definition), so this is what bounds how often anyone can make the agent
// probe: about as often as its own Consul checks do.
type probeCache struct {
	minAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*probeEntry
}

type probeEntry struct {
	run  sync.Mutex // held while the probe runs
	at   time.Time  // when the answer was made; zero: none
	code int
	ctyp string
	body []byte
}

func newProbeCache(minAge time.Duration, now func() time.Time) *probeCache {
	return &probeCache{minAge: minAge, now: now, entries: map[string]*probeEntry{}}
}

func (c *probeCache) entry(key string) *probeEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if ok {
		return e
	}
	if len(c.entries) >= maxProbeEntries {
		now := c.now()
		for k, old := range c.entries {
			if old.run.TryLock() {
				stale := now.Sub(old.at) >= c.minAge
				old.run.Unlock()
				if stale {
					delete(c.entries, k)
				}
			}
		}
	}
	e = &probeEntry{}
	if len(c.entries) < maxProbeEntries {
		c.entries[key] = e
	}
	return e
}

// wrap serves next through the cache.
func (c *probeCache) wrap(next http.Handler) http.Handler {
	if c.minAge <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := c.entry(r.URL.Path + "?" + r.URL.RawQuery)
		e.run.Lock()
		defer e.run.Unlock()
		if e.at.IsZero() || c.now().Sub(e.at) >= c.minAge {
			rec := &recorder{header: http.Header{}, code: http.StatusOK}
			next.ServeHTTP(rec, r)
			e.code, e.ctyp, e.body = rec.code, rec.header.Get("Content-Type"), rec.buf.Bytes()
			e.at = c.now()
			if r.Context().Err() != nil {
				// The caller went away mid-probe: its answer may be cut
				// short; the next caller runs the probe again.
				e.at = time.Time{}
			}
		}
		if e.ctyp != "" {
			w.Header().Set("Content-Type", e.ctyp)
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(e.code)
		_, _ = w.Write(e.body)
	})
}

// recorder keeps a handler's answer.
type recorder struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.buf.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
