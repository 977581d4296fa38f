package checks

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"

	"github.com/fleetplan/fleetplan/contract"
)

// CheckLayer maps a Consul check name to its health layer: "fleetplan L<n>
// ..." is layer n (1..4), Consul's serfHealth is layer 1, and the name Nomad
// gives a service check without a name (`service: "x" check`) is layer 3, as
// it can only be the application's own check. Anything else is layer 0.
func CheckLayer(name string) int {
	if rest, ok := strings.CutPrefix(name, contract.LayerCheckPrefix); ok && rest != "" {
		end := 0
		for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
			end++
		}
		if end > 0 && (end == len(rest) || rest[end] == ' ') {
			if n, err := strconv.Atoi(rest[:end]); err == nil && n >= 1 && n <= 4 {
				return n
			}
		}
		return 0
	}
	if name == contract.SerfHealthCheck {
		return 1
	}
	if strings.HasPrefix(name, `service: "`) && strings.HasSuffix(name, `" check`) {
		return 3
	}
	return 0
}

var (
	statusRE  = regexp.MustCompile(`"status"\s*:\s*"([^"\\]*)"`)
	versionRE = regexp.MustCompile(`"version"\s*:\s*"([^"\\]*)"`)
)

// ParseCheckOutput reads the status and version an application's health
// endpoint answered, from the output Consul records for an HTTP check:
//
//	HTTP GET http://127.0.0.1:20394/health: 200 OK Output: {"status":"healthy","version":"2.0.0",...}
//
// The body may also stand alone. Consul truncates long outputs, so a body
// that is not complete JSON is searched for the two fields; a field whose
// value was cut off is not reported. ok is false when the output carries
// neither field (a connection error, a body that is not the health JSON).
func ParseCheckOutput(out string) (status, version string, ok bool) {
	body := out
	if i := strings.Index(out, " Output: "); i >= 0 {
		body = out[i+len(" Output: "):]
	}
	i := strings.IndexByte(body, '{')
	if i < 0 {
		return "", "", false
	}
	body = body[i:]

	var doc struct {
		Status  *string `json:"status"`
		Version *string `json:"version"`
	}
	dec := json.NewDecoder(strings.NewReader(body))
	if err := dec.Decode(&doc); err == nil {
		if doc.Status != nil {
			status = *doc.Status
		}
		if doc.Version != nil {
			version = *doc.Version
		}
		return status, version, doc.Status != nil || doc.Version != nil
	}

	// Truncated or otherwise broken JSON: the first occurrence of each
	// field. Applications put the top-level fields first; a nested
	// "version" could only be found when the top-level one is missing.
	if m := statusRE.FindStringSubmatch(body); m != nil {
		status, ok = m[1], true
	}
	if m := versionRE.FindStringSubmatch(body); m != nil {
		version, ok = m[1], true
	}
	return status, version, ok
}
