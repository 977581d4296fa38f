package operator

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	consulapi "github.com/hashicorp/consul/api"
)

func consulAt(t *testing.T, h http.HandlerFunc) *consulapi.Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := consulapi.NewClient(&consulapi.Config{Address: strings.TrimPrefix(srv.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestActorFromToken(t *testing.T) {
	const secret = "5f1c2b7e-0000-4000-8000-00000000beef"
	o := &Operator{Consul: consulAt(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/acl/token/self" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(`{"AccessorID":"1234abcd-5678-4000-8000-000000000001","SecretID":"` + secret + `","Description":"fleetplan-operator"}`))
	})}
	got, err := o.Actor(context.Background(), "tester@ci")
	if err != nil {
		t.Fatal(err)
	}
	want := `token:fleetplan-operator (accessor 1234abcd…), comment "tester@ci"`
	if got != want {
		t.Errorf("actor = %s, want %s", got, want)
	}
	if strings.Contains(got, secret) || strings.Contains(got, "beef") {
		t.Errorf("the actor carries the token's secret: %s", got)
	}
}

func TestActorWithoutACLs(t *testing.T) {
	o := &Operator{Consul: consulAt(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte("ACL support disabled"))
	})}
	if got, err := o.Actor(context.Background(), "alice@laptop"); err != nil || got != "alice@laptop" {
		t.Errorf("ACLs off: actor %q, %v; want the given actor", got, err)
	}
	// ACLs on but the token cannot be read: no free text as the actor.
	denied := &Operator{Consul: consulAt(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte("ACL not found"))
	})}
	if got, err := denied.Actor(context.Background(), "alice@laptop"); err == nil || !strings.Contains(err.Error(), "CONSUL_HTTP_TOKEN") {
		t.Errorf("unreadable token: actor %q, %v; want an error that says which token to set", got, err)
	}
}
