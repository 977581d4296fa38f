package agent

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// fakeLocalServices is a Consul agent's /v1/agent/services with hash-based
// blocking: a request with ?hash=H waits while the services' hash is H.
type fakeLocalServices struct {
	mu      sync.Mutex
	hash    string
	changed chan struct{}
	paths   []string
	queries []string
}

func (f *fakeLocalServices) set(hash string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hash = hash
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeLocalServices) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.paths = append(f.paths, r.URL.Path)
	f.queries = append(f.queries, r.URL.RawQuery)
	hash, changed := f.hash, f.changed
	f.mu.Unlock()
	if r.URL.Path != "/v1/agent/services" {
		http.NotFound(w, r)
		return
	}
	if want := r.URL.Query().Get("hash"); want != "" && want == hash {
		select {
		case <-changed:
		case <-time.After(200 * time.Millisecond): // the test's "wait"
		case <-r.Context().Done():
			return
		}
		f.mu.Lock()
		hash = f.hash
		f.mu.Unlock()
	}
	w.Header().Set("X-Consul-ContentHash", hash)
	_, _ = w.Write([]byte(`{}`))
}

// The agent follows its device's services on the local Consul agent with
// hash-based blocking (never the catalog, which the servers answer): the
// index moves only when the hash does, and a wait asks for the last hash.
func TestFetchServicesBlocksOnTheLocalAgent(t *testing.T) {
	f := &fakeLocalServices{hash: "h1", changed: make(chan struct{})}
	srv := httptest.NewServer(f)
	defer srv.Close()
	cc, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	nc, _ := nomadapi.NewClient(&nomadapi.Config{Address: "http://127.0.0.1:1"})
	a, err := New(Config{Addr: "127.0.0.1:0"}, cc, nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	i1, err := a.fetchServices(ctx, 0)
	if err != nil || i1 == 0 {
		t.Fatalf("first read: index %d, %v", i1, err)
	}
	// Nothing changes: the wait ends with the same hash, the same index.
	i2, err := a.fetchServices(ctx, i1)
	if err != nil || i2 != i1 {
		t.Fatalf("unchanged services: index %d -> %d, %v", i1, i2, err)
	}
	// A service registered while the agent waits: a new index.
	go func() {
		time.Sleep(20 * time.Millisecond)
		f.set("h2")
	}()
	i3, err := a.fetchServices(ctx, i2)
	if err != nil || i3 == i2 {
		t.Fatalf("changed services: index %d -> %d, %v", i2, i3, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range f.paths {
		if p != "/v1/agent/services" {
			t.Errorf("the agent asked %s: only the local agent's services endpoint may be asked", p)
		}
	}
	if len(f.queries) != 3 || strings.Contains(f.queries[0], "hash=") ||
		!strings.Contains(f.queries[1], "hash=h1") || !strings.Contains(f.queries[1], "wait=") || !strings.Contains(f.queries[2], "hash=h1") {
		t.Errorf("queries %q: want a first read without a hash, then waits on the last hash", f.queries)
	}
}
