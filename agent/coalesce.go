package agent

import (
	"bytes"
	"net/http"
	"strconv"
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
	// key identifies the answer's verdict (stableKey); while it stays the
	// same, the body served stays the one first served with it.
	key string
}

// stableKey is what must change for a probe's answer to change: its code
// (the check's status) and its verdict line with the numbers blanked out.
// Consul sends a check's output to the servers at once only with a status
// change (else at most every check_update_interval, and with 0s every
// change is a Raft write): an output that changes at every run while the
// verdict stays would be a stream of writes or stale anyway. A new reason
// (another trigger, another version) is a new key.
func stableKey(code int, body []byte) string {
	line := body
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	b := make([]byte, 0, len(line)+4)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	digits := false
	for _, c := range line {
		if (c >= '0' && c <= '9') || (digits && c == '.') {
			if !digits {
				b = append(b, '#')
			}
			digits = true
			continue
		}
		digits = false
		b = append(b, c)
	}
	return string(b)
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

// wrap serves next through the cache, with stable answers (stableKey).
func (c *probeCache) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := c.entry(r.URL.Path + "?" + r.URL.RawQuery)
		e.run.Lock()
		defer e.run.Unlock()
		if c.minAge <= 0 || e.at.IsZero() || c.now().Sub(e.at) >= c.minAge {
			rec := &recorder{header: http.Header{}, code: http.StatusOK}
			next.ServeHTTP(rec, r)
			body := rec.buf.Bytes()
			if k := stableKey(rec.code, body); k != e.key || e.body == nil {
				e.key, e.body = k, body
			}
			e.code, e.ctyp = rec.code, rec.header.Get("Content-Type")
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
