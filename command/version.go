package command

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/urfave/cli/v2"
)

// baseVersion is the release line this source tree builds.
const baseVersion = "0.1.0"

// Version is set at build time by `make dev` and `make release` with
// -ldflags "-X github.com/fleetplan/fleetplan/command.Version=...". A plain
// `go build` or `go install` leaves it empty: the version then comes from
// the build information Go stamps into every binary (see buildVersion).
var Version = ""

// VersionInfo is what `fleetplan version -json` prints.
type VersionInfo struct {
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from ("" when
	// built outside a checkout, or with -buildvcs=false).
	Revision string `json:"revision,omitempty"`
	// Modified: the checkout had uncommitted changes.
	Modified bool   `json:"modified"`
	Time     string `json:"vcs_time,omitempty"`
	Go       string `json:"go"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
}

// buildVersion reads the version: -ldflags first, else the module version
// of `go install ...@vX.Y.Z`, else baseVersion-dev with the VCS revision
// `go build` stamps in a checkout (vcs.revision, vcs.modified).
func buildVersion() VersionInfo {
	v := VersionInfo{Version: Version, Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			case "vcs.time":
				v.Time = s.Value
			}
		}
	}
	if v.Version != "" {
		return v
	}
	if ok && isRelease(bi.Main.Version) {
		v.Version = strings.TrimPrefix(bi.Main.Version, "v")
		return v
	}
	v.Version = baseVersion + "-dev"
	if v.Revision != "" {
		v.Version += "+" + shortRev(v.Revision)
		if v.Modified {
			v.Version += ".dirty"
		}
	}
	return v
}

// pseudoVersion matches the time and revision of a Go pseudo-version
// (v0.0.0-20261201174851-1d35ad59e060), which Go stamps in a checkout
// without a tag.
var pseudoVersion = regexp.MustCompile(`-(0\.)?\d{14}-[0-9a-f]{12}`)

// isRelease says whether a module version is a tagged release: not
// "(devel)", not a pseudo-version, not a modified tree ("+dirty").
func isRelease(mv string) bool {
	return mv != "" && mv != "(devel)" && !pseudoVersion.MatchString(mv) && !strings.HasSuffix(mv, "+dirty")
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// String is the one-line version, like `nomad version`.
func (v VersionInfo) String() string {
	s := "fleetplan v" + v.Version
	if v.Revision != "" && !strings.Contains(v.Version, shortRev(v.Revision)) {
		s += " (" + shortRev(v.Revision)
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return fmt.Sprintf("%s %s %s/%s", s, v.Go, v.OS, v.Arch)
}

func init() {
	register(&cli.Command{
		Name:  "version",
		Usage: "print fleetplan's version (also -version, -v)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print {\"version\", \"revision\", \"modified\", \"vcs_time\", \"go\", \"os\", \"arch\"}"},
		},
		Action: func(c *cli.Context) error {
			if _, err := initCommand(c, withNoArgs()); err != nil {
				return err
			}
			v := buildVersion()
			if c.Bool("json") {
				return printJSON(c, v)
			}
			fmt.Fprintln(c.App.Writer, v.String())
			return nil
		},
	})
}
