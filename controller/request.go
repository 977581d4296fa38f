package controller

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	fphcl "github.com/fleetplan/fleetplan/hcl"
	"github.com/fleetplan/fleetplan/jobs"
	"github.com/fleetplan/fleetplan/scheduler"
	"github.com/fleetplan/fleetplan/store"
)

// SubmitOptions are apply's options a request carries.
type SubmitOptions struct {
	AutoApprove    bool
	SampleInterval time.Duration
	Actor          string
	// Namespace is the Nomad namespace of the rollouts ("" is default).
	Namespace string
	// Now is the submission time (time.Now by default).
	Now time.Time
}

// NewRequests builds the rollout requests of a parsed policy file, one per
// rollout in it: each holds the file's source and every file the file's
// rollouts name (jobspecs, input files), so that the controller service
// can parse it again without the operator's files. Each request is parsed
// back here as the service will (ParseRequest); one that would name a file
// on the service's host is refused, with how to fix it.
func NewRequests(policyFile string, policies []*scheduler.Policy, o SubmitOptions) ([]*store.RolloutRequest, error) {
	abs, err := filepath.Abs(policyFile)
	if err != nil {
		return nil, fmt.Errorf("building the rollout request of %s: %w", policyFile, err)
	}
	src, err := readLimited(abs, fphcl.MaxPolicyFileSize)
	if err != nil {
		return nil, fmt.Errorf("building the rollout request of %s: reading the policy: %w", policyFile, err)
	}
	var files []store.RequestFile
	seen := map[string]bool{}
	for _, p := range policies {
		for _, f := range referencedFiles(p) {
			if seen[f] {
				continue
			}
			seen[f] = true
			b, err := readLimited(f, fphcl.MaxJobspecSize)
			if err != nil {
				return nil, fmt.Errorf("building the rollout request of %s: reading %s, which rollout %s names: %w", policyFile, f, p.Name, err)
			}
			files = append(files, store.RequestFile{Path: f, Source: string(b)})
		}
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	var reqs []*store.RolloutRequest
	for _, p := range policies {
		r := &store.RolloutRequest{
			ID:             NewRequestID(now),
			App:            p.Name,
			Version:        p.Release.Version,
			Namespace:      o.Namespace,
			PolicyFile:     abs,
			Policy:         string(src),
			Files:          files,
			AutoApprove:    o.AutoApprove,
			SampleInterval: store.Duration(o.SampleInterval),
			Actor:          o.Actor,
			SubmittedAt:    now.UTC(),
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encoding the rollout request of %s: %w", p.Name, err)
		}
		if len(b) > store.MaxValueBytes {
			return nil, fmt.Errorf("the rollout request of %s (the policy and the files it names) is %d bytes, over the %d bytes a Consul KV value can hold; apply it with -local, which runs it in this process",
				p.Name, len(b), store.MaxValueBytes)
		}
		// The dry run: parse it the way the service will.
		if _, cleanup, err := ParseRequest(r); err != nil {
			return nil, err
		} else {
			cleanup()
		}
		reqs = append(reqs, r)
	}
	return reqs, nil
}

// referencedFiles are the files a policy names, as absolute paths.
func referencedFiles(p *scheduler.Policy) []string {
	var out []string
	if p.Release.Jobspec != "" {
		out = append(out, p.Release.Jobspec)
	}
	if f := p.Health.Functional; f != nil && f.InputFile != "" {
		out = append(out, f.InputFile)
	}
	return out
}

// NewRequestID names a request: q<UTC time>-<6 random hex digits>.
func NewRequestID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "q" + now.UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// ParseRequest parses a request's policy again, as the controller service
// does: the policy and its files are written into a private folder at
// their paths where they were submitted (so relative paths resolve as they
// did; a path written absolute is rewritten to the folder's copy), then
// parsed and validated. It returns the request's rollout with
// File naming the submitted policy file; cleanup removes the folder (the
// jobspec in it is read when the run prepares the release).
func ParseRequest(req *store.RolloutRequest) (p *scheduler.Policy, cleanup func(), err error) {
	cleanup = func() {}
	if err := req.Check(); err != nil {
		return nil, cleanup, err
	}
	fail := func(format string, args ...any) (*scheduler.Policy, func(), error) {
		return nil, cleanup, fmt.Errorf("rollout request %s of %s (policy %s): %s", req.ID, req.App, req.PolicyFile, fmt.Sprintf(format, args...))
	}
	dir, err := os.MkdirTemp("", "fleetplan-request-")
	if err != nil {
		return fail("making a folder to parse it in: %v", err)
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	place := func(path, src string) (string, error) {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return "", fmt.Errorf("the path %q is not a clean absolute path", path)
		}
		at := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(at), 0o700); err != nil {
			return "", err
		}
		return at, os.WriteFile(at, []byte(src), 0o600)
	}
	policyPath, err := place(req.PolicyFile, req.Policy)
	if err != nil {
		return fail("writing the policy: %v", err)
	}
	for _, f := range req.Files {
		if _, err := place(f.Path, f.Source); err != nil {
			return fail("writing %s: %v", f.Path, err)
		}
	}
	// A file the policy names by its absolute path is read from the
	// folder too: its quoted path in the source is rewritten (a relative
	// path resolves there already).
	src := req.Policy
	for _, f := range req.Files {
		src = strings.ReplaceAll(src, strconv.Quote(f.Path), strconv.Quote(filepath.Join(dir, f.Path)))
	}
	policies, diags := fphcl.ParseSource(policyPath, []byte(src))
	if diags.HasErrors() {
		return fail("the policy is not valid: %s", strings.ReplaceAll(diags.Error(), dir, ""))
	}
	for _, cand := range policies {
		if jobs.QualifiedName(cand.Name, req.Namespace) == req.App {
			p = cand
			p.Name = req.App
		}
	}
	if p == nil {
		return fail("the policy has no rollout %q", req.App)
	}
	if p.Release.Version != req.Version {
		return fail("the policy's rollout %s is for version %s, the request for %s", req.App, p.Release.Version, req.Version)
	}
	for _, f := range referencedFiles(p) {
		if !strings.HasPrefix(f, dir+string(filepath.Separator)) {
			return fail("it names %s, which would be a file on the controller's host (a path the request could not carry, such as one built by an expression); write it as a string relative to the policy file, or apply with -local", f)
		}
	}
	p.File = req.PolicyFile
	return p, cleanup, nil
}

// readLimited reads a regular file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errors.New("file too large: more than " + fmt.Sprint(limit) + " bytes")
	}
	return b, nil
}
