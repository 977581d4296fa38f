// Command release writes and checks the SBOMs of fleetplan's release
// binaries (make release, make release-check). It reads the build
// information Go embeds in every binary (what `go version -m` prints), so
// it needs no network and no other tool.
//
//	go run ./tools/release sbom BINARY VERSION > BINARY.cdx.json
//	go run ./tools/release check DIR    (DIR/VERSION holds the version)
//
// check verifies a release folder: the three binaries (linux/amd64,
// linux/arm64, linux/arm with GOARM=7), static (CGO_ENABLED=0), built with
// -trimpath and a stamped version; SHA256SUMS matches every file; each
// binary's SBOM lists exactly the modules the binary was built from.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	usage := errors.New("usage: release sbom BINARY VERSION | release check DIR")
	if len(args) < 2 {
		return usage
	}
	switch args[0] {
	case "sbom":
		if len(args) != 3 {
			return usage
		}
		bom, err := sbomOf(args[1], args[2])
		if err != nil {
			return err
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(bom)
	case "check":
		problems, err := check(args[1])
		if err != nil {
			return err
		}
		if len(problems) > 0 {
			return fmt.Errorf("%s is not a valid release:\n  %s", args[1], strings.Join(problems, "\n  "))
		}
		fmt.Fprintf(out, "%s: %d binaries, checksums and SBOMs verified\n", args[1], len(platforms))
		return nil
	}
	return fmt.Errorf("unknown subcommand %q (sbom or check)", args[0])
}

// platforms are the release's binaries: GOOS, GOARCH and the GOARM
// setting (linux/arm is ARMv7: Raspberry Pis, older Jetsons' userlands).
var platforms = []struct{ goos, goarch, goarm string }{
	{"linux", "amd64", ""},
	{"linux", "arm64", ""},
	{"linux", "arm", "7"},
}

// binaryName is a platform's binary in the release folder.
func binaryName(goos, goarch string) string { return fmt.Sprintf("fleetplan_%s_%s", goos, goarch) }

// CycloneDX 1.5 JSON, the fields fleetplan fills.
type bom struct {
	BOMFormat   string      `json:"bomFormat"`
	SpecVersion string      `json:"specVersion"`
	Version     int         `json:"version"`
	Metadata    bomMetadata `json:"metadata"`
	Components  []component `json:"components"`
}

type bomMetadata struct {
	Tools      []component `json:"tools"`
	Component  component   `json:"component"`
	Properties []property  `json:"properties,omitempty"`
}

type component struct {
	Type       string     `json:"type"`
	Name       string     `json:"name"`
	Version    string     `json:"version,omitempty"`
	PURL       string     `json:"purl,omitempty"`
	BOMRef     string     `json:"bom-ref,omitempty"`
	Hashes     []hash     `json:"hashes,omitempty"`
	Properties []property `json:"properties,omitempty"`
}

type hash struct {
	Alg     string `json:"alg"`
	Content string `json:"content"`
}

type property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// sbomOf builds the SBOM of a Go binary from its embedded build
// information. It has no timestamp or random serial number, so that the
// same binary always gives the same SBOM.
func sbomOf(path, version string) (*bom, error) {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the build information of %s (is it a Go binary?): %w", path, err)
	}
	sum, err := fileSHA256(path)
	if err != nil {
		return nil, err
	}
	main := component{
		Type: "application", Name: bi.Main.Path, Version: version,
		PURL: purl(bi.Main.Path, bi.Main.Version), BOMRef: bi.Main.Path,
		Hashes: []hash{{Alg: "SHA-256", Content: sum}},
	}
	var props []property
	props = append(props, property{Name: "go:toolchain", Value: bi.GoVersion})
	for _, s := range bi.Settings {
		props = append(props, property{Name: "go:build:" + s.Key, Value: s.Value})
	}
	b := &bom{
		BOMFormat: "CycloneDX", SpecVersion: "1.5", Version: 1,
		Metadata: bomMetadata{
			Tools:      []component{{Type: "application", Name: "fleetplan tools/release"}},
			Component:  main,
			Properties: props,
		},
		Components: []component{{Type: "framework", Name: "golang.org/toolchain", Version: bi.GoVersion,
			PURL: "pkg:golang/toolchain@" + bi.GoVersion, BOMRef: "golang.org/toolchain"}},
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		c := component{Type: "library", Name: d.Path, Version: d.Version, PURL: purl(d.Path, d.Version), BOMRef: d.Path + "@" + d.Version}
		if d.Sum != "" {
			c.Properties = []property{{Name: "go:module:sum", Value: d.Sum}}
		}
		b.Components = append(b.Components, c)
	}
	sort.Slice(b.Components, func(i, j int) bool { return b.Components[i].BOMRef < b.Components[j].BOMRef })
	return b, nil
}

func settingOf(bi *buildinfo.BuildInfo, key string) string {
	for _, s := range bi.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// purl is the package URL of a Go module (github.com/purl-spec, type golang).
func purl(path, version string) string {
	if version == "" || version == "(devel)" {
		return "pkg:golang/" + path
	}
	return "pkg:golang/" + path + "@" + version
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// check returns what is wrong with the release folder dir.
func check(dir string) ([]string, error) {
	var problems []string
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil {
		return nil, fmt.Errorf("reading the release's version: %w", err)
	}
	version := strings.TrimSpace(string(v))
	sums, err := readSums(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		return nil, err
	}
	for name, want := range sums {
		got, err := fileSHA256(filepath.Join(dir, name))
		if err != nil {
			problems = append(problems, fmt.Sprintf("SHA256SUMS lists %s: %v", name, err))
		} else if got != want {
			problems = append(problems, fmt.Sprintf("%s: sha256 %s, SHA256SUMS says %s", name, got, want))
		}
	}
	for _, p := range platforms {
		name := binaryName(p.goos, p.goarch)
		path := filepath.Join(dir, name)
		bi, err := buildinfo.ReadFile(path)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
			continue
		}
		want := map[string]string{"GOOS": p.goos, "GOARCH": p.goarch, "CGO_ENABLED": "0", "-trimpath": "true"}
		if p.goarm != "" {
			want["GOARM"] = p.goarm
		}
		for k, v := range want {
			if got := settingOf(bi, k); got != v {
				problems = append(problems, fmt.Sprintf("%s: built with %s=%q, want %q", name, k, got, v))
			}
		}
		// -trimpath keeps -ldflags out of the build information: look for
		// the stamped version in the binary itself.
		if data, err := os.ReadFile(path); err != nil || !bytes.Contains(data, []byte(version)) {
			problems = append(problems, fmt.Sprintf("%s: version %s is not stamped in it (-ldflags -X .../command.Version=)", name, version))
		}
		if _, ok := sums[name]; !ok {
			problems = append(problems, fmt.Sprintf("SHA256SUMS does not list %s", name))
		}
		problems = append(problems, checkSBOM(dir, name, version, bi, sums)...)
	}
	return problems, nil
}

// checkSBOM compares a binary's SBOM with the modules it was built from.
func checkSBOM(dir, name, version string, bi *buildinfo.BuildInfo, sums map[string]string) []string {
	sbomName := name + ".cdx.json"
	data, err := os.ReadFile(filepath.Join(dir, sbomName))
	if err != nil {
		return []string{fmt.Sprintf("%s: no SBOM: %v", name, err)}
	}
	var b bom
	if err := json.Unmarshal(data, &b); err != nil {
		return []string{fmt.Sprintf("%s: not JSON: %v", sbomName, err)}
	}
	var problems []string
	if b.BOMFormat != "CycloneDX" || b.SpecVersion == "" {
		problems = append(problems, fmt.Sprintf("%s: not a CycloneDX document", sbomName))
	}
	if _, ok := sums[sbomName]; !ok {
		problems = append(problems, fmt.Sprintf("SHA256SUMS does not list %s", sbomName))
	}
	if b.Metadata.Component.Version != version {
		problems = append(problems, fmt.Sprintf("%s: version %q, want %q", sbomName, b.Metadata.Component.Version, version))
	}
	if len(b.Metadata.Component.Hashes) != 1 || b.Metadata.Component.Hashes[0].Content != sums[name] {
		problems = append(problems, fmt.Sprintf("%s: the binary's hash is not its SHA256SUMS entry", sbomName))
	}
	listed := map[string]bool{}
	for _, c := range b.Components {
		listed[c.Name+"@"+c.Version] = true
	}
	deps := append([]*debug.Module{}, bi.Deps...)
	for _, d := range deps {
		if d.Replace != nil {
			d = d.Replace
		}
		if !listed[d.Path+"@"+d.Version] {
			problems = append(problems, fmt.Sprintf("%s does not list %s %s", sbomName, d.Path, d.Version))
		}
	}
	if len(b.Components) != len(deps)+1 {
		problems = append(problems, fmt.Sprintf("%s lists %d components, the binary has %d modules and the toolchain", sbomName, len(b.Components), len(deps)))
	}
	return problems
}

// readSums reads a sha256sum file.
func readSums(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the checksums: %w", err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			return nil, fmt.Errorf("%s: %q is not a sha256sum line", path, sc.Text())
		}
		sums[strings.TrimPrefix(name, "*")] = sum
	}
	return sums, sc.Err()
}
