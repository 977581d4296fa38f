package operator

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// The Nomad client fleetplan builds retries a transient 500 (Nomad's
// NewClient keeps a client it makes itself, so the retries must be given
// to it before).
func TestNomadClientRetriesTransientErrors(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "rpc error: leader unavailable", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"127.0.0.1:4647"`))
	}))
	defer srv.Close()
	t.Setenv("NOMAD_ADDR", srv.URL)
	c, _, err := NomadClientNoCheck()
	if err != nil {
		t.Fatal(err)
	}
	leader, err := c.Status().Leader()
	if err != nil || leader != "127.0.0.1:4647" {
		t.Fatalf("leader %q, %v: want the answer after one retry", leader, err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (one retry)", n)
	}
}
