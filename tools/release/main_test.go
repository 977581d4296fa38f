package main

import (
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The SBOM of a Go binary (this test's) lists its toolchain and every
// module it was built from, with the binary's hash and the given version.
func TestSBOMListsEveryModule(t *testing.T) {
	bi, err := buildinfo.ReadFile(os.Args[0])
	if err != nil {
		t.Skipf("the test binary has no build information: %v", err)
	}
	b, err := sbomOf(os.Args[0], "9.9.9+test")
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := fileSHA256(os.Args[0])
	if b.BOMFormat != "CycloneDX" || b.Metadata.Component.Version != "9.9.9+test" || b.Metadata.Component.Hashes[0].Content != sum {
		t.Errorf("metadata: %+v", b.Metadata.Component)
	}
	if len(b.Components) != len(bi.Deps)+1 {
		t.Errorf("%d components for %d modules and the toolchain", len(b.Components), len(bi.Deps))
	}
	again, _ := sbomOf(os.Args[0], "9.9.9+test")
	j1, _ := json.Marshal(b)
	j2, _ := json.Marshal(again)
	if string(j1) != string(j2) {
		t.Error("two SBOMs of the same binary differ")
	}
}

// check finds a wrong architecture, a missing binary, a checksum that
// does not match and a version that is not stamped.
func TestCheckFindsProblems(t *testing.T) {
	dir := t.TempDir()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// This binary stands for linux/amd64; arm64 is missing, arm is junk.
	write("fleetplan_linux_amd64", self)
	write("fleetplan_linux_arm", []byte("not a binary"))
	// Built at run time, so that the test binary does not contain it.
	version := fmt.Sprintf("9.9.9+pid%d", os.Getpid())
	write("VERSION", []byte(version+"\n"))
	b, err := sbomOf(filepath.Join(dir, "fleetplan_linux_amd64"), version)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(b)
	write("fleetplan_linux_amd64.cdx.json", data)
	sum, _ := fileSHA256(filepath.Join(dir, "fleetplan_linux_amd64"))
	write("SHA256SUMS", []byte(fmt.Sprintf("%s  fleetplan_linux_amd64\n%s  fleetplan_linux_amd64.cdx.json\n%s  VERSION\n",
		sum, strings.Repeat("0", 64), strings.Repeat("0", 64))))

	problems, err := check(dir)
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Join(problems, "\n")
	for _, want := range []string{
		"fleetplan_linux_amd64.cdx.json: sha256", // tampered checksum
		"fleetplan_linux_arm64: could not read",  // missing
		"fleetplan_linux_arm: ",                  // not a Go binary
		"version " + version + " is not stamped", // no -X
		"built with CGO_ENABLED=",                // tests are built with cgo or without trimpath
	} {
		if !strings.Contains(all, want) {
			t.Errorf("check does not report %q:\n%s", want, all)
		}
	}
	if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" && strings.Contains(all, "fleetplan_linux_amd64: built with GOARCH") {
		t.Errorf("the right architecture is reported:\n%s", all)
	}
}
