package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fleetplan/fleetplan/scheduler"
)

// packChunks packs device records the way Archive writes them.
func packChunks(devs map[string]*scheduler.DeviceRecord) ([][]byte, error) {
	recs, err := archiveRecords(devs)
	if err != nil {
		return nil, err
	}
	return Pack(recs, ArchiveChunks)
}

func TestPackChunks(t *testing.T) {
	mk := func(n, reasonLen int) map[string]*scheduler.DeviceRecord {
		m := map[string]*scheduler.DeviceRecord{}
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("node-%06d", i)
			m[id] = &scheduler.DeviceRecord{DeviceRef: scheduler.DeviceRef{ID: id}, Reason: strings.Repeat("r", reasonLen), UpdatedAt: time.Unix(int64(i), 0)}
		}
		return m
	}
	tests := []struct {
		name       string
		devs       map[string]*scheduler.DeviceRecord
		wantChunks int
	}{
		{"none", mk(0, 0), 0},
		{"one", mk(1, 0), 1},
		{"exactly one chunk by count", mk(ArchiveChunkDevices, 0), 1},
		{"one over the count", mk(ArchiveChunkDevices+1, 0), 2},
		{"big records split by size", mk(100, 10<<10), 4}, // ~10 KiB each, 256 KiB chunks
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chunks, err := packChunks(tt.devs)
			if err != nil {
				t.Fatal(err)
			}
			if len(chunks) != tt.wantChunks {
				t.Fatalf("%d chunks, want %d", len(chunks), tt.wantChunks)
			}
			seen := map[string]bool{}
			last := ""
			for i, c := range chunks {
				if len(c) > ArchiveChunkBytes {
					t.Errorf("chunk %d is %d bytes", i, len(c))
				}
				var recs []*scheduler.DeviceRecord
				if err := json.Unmarshal(c, &recs); err != nil {
					t.Fatalf("chunk %d: %v", i, err)
				}
				if len(recs) > ArchiveChunkDevices {
					t.Errorf("chunk %d holds %d records", i, len(recs))
				}
				for _, r := range recs {
					if r.ID <= last {
						t.Errorf("records out of order: %s after %s", r.ID, last)
					}
					last = r.ID
					seen[r.ID] = true
				}
			}
			if len(seen) != len(tt.devs) {
				t.Fatalf("%d records in the chunks, want %d", len(seen), len(tt.devs))
			}
		})
	}
}

func TestLockHeldErrorNamesHolder(t *testing.T) {
	err := error(&LockHeldError{App: "edgeinfer", Holder: "alice@ops pid 12", Since: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	if !strings.Contains(err.Error(), "alice@ops pid 12") || !strings.Contains(err.Error(), "edgeinfer") {
		t.Fatalf("message %q does not name the rollout and the holder", err)
	}
	wrapped := fmt.Errorf("apply: %w", err)
	if h, ok := IsLockHeld(wrapped); !ok || h.Holder != "alice@ops pid 12" {
		t.Fatalf("IsLockHeld(%v) = %v, %v", wrapped, h, ok)
	}
}

func TestCheckName(t *testing.T) {
	for _, bad := range []string{"", "a/b", "..", "."} {
		if checkName("x", bad) == nil {
			t.Errorf("checkName(%q) accepted", bad)
		}
	}
	if err := checkName("x", "edgeinfer"); err != nil {
		t.Error(err)
	}
}
