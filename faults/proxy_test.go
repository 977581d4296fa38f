package faults

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// The proxy forwards, injects 500s, drops and latency at about the rates
// asked, and the same seed draws the same faults.
func TestProxyInjectsSeededFaults(t *testing.T) {
	var hits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}))
	defer backend.Close()

	run := func(seed int64) []int {
		p, err := StartProxy(backend.URL, ProxyConfig{ErrorRate: 0.2, DropRate: 0.1, LatencyRate: 0.2, MaxLatency: 5 * time.Millisecond, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		cl := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		var codes []int
		for i := 0; i < 300; i++ {
			resp, err := cl.Get("http://" + p.Addr + "/v1/x")
			if err != nil {
				codes = append(codes, 0) // dropped
				continue
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(body) != "ok /v1/x" {
				t.Fatalf("forwarded answer %q", body)
			}
			codes = append(codes, resp.StatusCode)
		}
		st := p.Stats()
		if st.Requests != 300 || st.Errors == 0 || st.Drops == 0 || st.Delayed == 0 {
			t.Errorf("stats %+v, want every fault kind among 300 requests", st)
		}
		return codes
	}
	a, b := run(42), run(42)
	n500, drops := 0, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("request %d: %d then %d with the same seed", i, a[i], b[i])
		}
		switch a[i] {
		case 500:
			n500++
		case 0:
			drops++
		}
	}
	if n500 < 30 || n500 > 90 || drops < 10 || drops > 60 {
		t.Errorf("%d 500s and %d drops of 300, want about 60 and 30", n500, drops)
	}

	// Disabled, it is a plain proxy.
	p, err := StartProxy(backend.URL, ProxyConfig{ErrorRate: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetEnabled(false)
	resp, err := http.Get("http://" + p.Addr + "/v1/y")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("disabled proxy: %v %v", err, resp)
	}
	resp.Body.Close()
}
