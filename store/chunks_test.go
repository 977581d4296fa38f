package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func rawRecords(t *testing.T, n, size int) []json.RawMessage {
	t.Helper()
	var recs []map[string]any
	for i := 0; i < n; i++ {
		recs = append(recs, map[string]any{"i": i, "pad": strings.Repeat("x", size)})
	}
	out, err := Encode(recs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A chunk is exactly json.Marshal of its records: the format the readers
// (and the chunks written before the Appender) have.
func TestPackIsJSONArray(t *testing.T) {
	recs := rawRecords(t, 7, 10)
	chunks, err := Pack(recs, ChunkLimits{MaxRecords: 3, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if len(chunks) != 3 {
		t.Fatalf("%d chunks, want 3", len(chunks))
	}
	want, _ := json.Marshal(recs[:3])
	if !bytes.Equal(chunks[0], want) {
		t.Errorf("chunk 0 = %s, want %s", chunks[0], want)
	}
}

func TestPackLimits(t *testing.T) {
	recs := rawRecords(t, 100, 1000)
	chunks, err := Pack(recs, ChunkLimits{MaxBytes: 10 << 10})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i, c := range chunks {
		if len(c) > 10<<10 {
			t.Errorf("chunk %d is %d bytes", i, len(c))
		}
		var got []json.RawMessage
		if err := json.Unmarshal(c, &got); err != nil {
			t.Fatal(err)
		}
		n += len(got)
	}
	if n != 100 || len(chunks) < 10 {
		t.Fatalf("%d records in %d chunks", n, len(chunks))
	}
	if _, err := Pack([]json.RawMessage{json.RawMessage(fmt.Sprintf("%q", strings.Repeat("x", MaxValueBytes)))}, EventChunks); err == nil {
		t.Fatal("a record over the value limit was packed")
	}
}

// Appending to a stored chunk continues it; a full one is left as it is.
func TestPackerResume(t *testing.T) {
	recs := rawRecords(t, 5, 1)
	stored, _ := json.Marshal(recs[:2])
	p := packer{limits: ChunkLimits{MaxRecords: 3, MaxBytes: 1 << 20}}
	p.resume(stored, 2)
	for _, r := range recs[2:] {
		if err := p.add(r); err != nil {
			t.Fatal(err)
		}
	}
	chunks := p.done()
	first, _ := json.Marshal(recs[:3])
	second, _ := json.Marshal(recs[3:])
	if len(chunks) != 2 || !bytes.Equal(chunks[0], first) || !bytes.Equal(chunks[1], second) || p.counts[1] != 2 {
		t.Fatalf("chunks %q counts %v", chunks, p.counts)
	}

	full, _ := json.Marshal(recs[:3])
	p = packer{limits: ChunkLimits{MaxRecords: 3, MaxBytes: 1 << 20}}
	p.resume(full, 3)
	_ = p.add(recs[3])
	chunks = p.done()
	if len(chunks) != 2 || !bytes.Equal(chunks[0], full) {
		t.Fatalf("a full chunk was changed: %q", chunks)
	}
}

func TestLayoutKeys(t *testing.T) {
	l := NewLayout("")
	for got, want := range map[string]string{
		l.State("edgeinfer"):                         "fleetplan/rollouts/edgeinfer/state",
		l.Devices("edgeinfer"):                       "fleetplan/rollouts/edgeinfer/devices/",
		l.Controls("edgeinfer"):                      "fleetplan/rollouts/edgeinfer/control/",
		l.Lock("edgeinfer"):                          "fleetplan/rollouts/edgeinfer/lock",
		l.RunState("edgeinfer", "r1"):                "fleetplan/rollouts/edgeinfer/history/r1/state",
		l.RunDeviceChunk("edgeinfer", "r1", 3):       "fleetplan/rollouts/edgeinfer/history/r1/devices/000003",
		l.App("edgeinfer"):                           "fleetplan/apps/edgeinfer",
		AuditChunk(l.AuditTrail("edgeinfer"), 12):    "fleetplan/audit/edgeinfer/00000012",
		l.AuditTrail(""):                             "fleetplan/audit/_global/",
		l.RegistryDevice("n1"):                       "fleetplan/registry/n1",
		l.RegistryEventChunk(1700000000000000000, 7): "fleetplan/registry-events/1700000000000000000-0007",
		AgentConfigKey("", "edgeinfer"):              "fleetplan/agent/apps/edgeinfer",
		AgentConfigKey("t/apps/", "edgeinfer"):       "t/apps/edgeinfer",
		NewLayout("other").Registry():                "other/registry/",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}
