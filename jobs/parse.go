package jobs

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/hashicorp/nomad/api"

	"github.com/fleetplan/fleetplan/hcl"
)

// ParseJobspec has the Nomad server parse the HCL jobspec at path and
// canonicalize it (POST /v1/jobs/parse, the endpoint behind
// Jobs().ParseHCLOpts): fleetplan does not link the Nomad jobspec parser,
// whose module is not open source from Nomad 1.7 on.
//
// Errors name the file; the server's own diagnostics, which it reports
// against "input.hcl", are rewritten to name it too.
func ParseJobspec(ctx context.Context, nc *api.Client, path string) (*api.Job, error) {
	src, err := readJobspec(path)
	if err != nil {
		return nil, err
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

// readJobspec reads a jobspec of at most hcl.MaxJobspecSize bytes (the
// limit validate enforces too, invariant I10): a path that names a model or
// a log is reported with its size, never read whole and sent to Nomad.
func readJobspec(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading jobspec: %w", err)
	}
	defer fh.Close()
	if info, err := fh.Stat(); err == nil && info.Mode().IsRegular() && info.Size() > hcl.MaxJobspecSize {
		return nil, fmt.Errorf("reading jobspec %s: %d bytes, more than the limit of %d (a Nomad job file is a few kilobytes: check the path)", path, info.Size(), hcl.MaxJobspecSize)
	}
	src, err := io.ReadAll(io.LimitReader(fh, hcl.MaxJobspecSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading jobspec %s: %w", path, err)
	}
	if len(src) > hcl.MaxJobspecSize {
		return nil, fmt.Errorf("reading jobspec %s: more than the limit of %d bytes (a Nomad job file is a few kilobytes: check the path)", path, hcl.MaxJobspecSize)
	}
	return src, nil
}
