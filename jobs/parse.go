package jobs

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// ParseJobspec has the Nomad server parse the HCL jobspec at path and
// canonicalize it (POST /v1/jobs/parse, the endpoint behind
// Jobs().ParseHCLOpts): fleetplan does not link the Nomad jobspec parser,
// whose module is not open source from Nomad 1.7 on.
//
// Errors name the file; the server's own diagnostics, which it reports
// against "input.hcl", are rewritten to name it too.
func ParseJobspec(ctx context.Context, nc *api.Client, path string) (*api.Job, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading jobspec: %w", err)
	}
	req := &api.JobsParseRequest{JobHCL: string(src), Canonicalize: true}
	// The same request Jobs().ParseHCLOpts sends, through Raw so that it
	// honours ctx (ParseHCLOpts takes no options).
	var job api.Job
	if _, err := nc.Raw().Write("/v1/jobs/parse", req, &job, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		if ure, ok := responseError(err); ok && ure.StatusCode() == http.StatusBadRequest && ure.HasBody() {
			msg := strings.ReplaceAll(ure.Body(), "input.hcl:", path+":")
			return nil, fmt.Errorf("parsing jobspec %s: %s", path, msg)
		}
		return nil, fmt.Errorf("parsing jobspec %s with the Nomad server: %w", path, err)
	}
	if job.ID == nil || *job.ID == "" {
		return nil, fmt.Errorf("parsing jobspec %s: the server returned a job without an ID", path)
	}
	return &job, nil
}
