package audit

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestNewUsesTheStoreLayout(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if p := New(c, "").prefix; p != "fleetplan/audit/" {
		t.Errorf("default prefix %q", p)
	}
	if p := New(c, "x/audit").prefix; p != "x/audit/" {
		t.Errorf("prefix %q", p)
	}
	if key("") != "_global" || key("edgeinfer") != "edgeinfer" {
		t.Error("trail folder names")
	}
}

// The mirror file gets the record even when Consul cannot be reached, and
// the error says which trail the append was for.
func TestAppendMirrorsAndNamesTheTrail(t *testing.T) {
	c, err := api.NewClient(&api.Config{Address: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	tr := New(c, "")
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := tr.MirrorTo(path); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = tr.Append(ctx, Record{Rollout: "edgeinfer", Actor: "alice", Action: "approve", Outcome: "ok"})
	if err == nil || !strings.Contains(err.Error(), "audit trail of edgeinfer") {
		t.Fatalf("Append with Consul down: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil || rec.Action != "approve" || rec.Time.IsZero() {
		t.Fatalf("mirror line %q: %v", b, err)
	}
}
