package hcl

import (
	"errors"
	"io"
	"os"
	"path/filepath"
)

// Files a policy names (the jobspec, a probe's input_file) are resolved
// against the policy's folder and read with a size limit.

// resolve makes a path from the policy absolute, relative to the policy
// file's folder.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

// errTooLarge is returned by readRegularFile for a file above its limit.
var errTooLarge = errors.New("file too large")

// errNotRegular is returned by readRegularFile for anything but a regular
// file: a policy must not make fleetplan read a device or wait on a pipe.
var errNotRegular = errors.New("not a regular file")

// readRegularFile reads a regular file of at most limit bytes.
func readRegularFile(path string, limit int64) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, errNotRegular
	}
	if info.Size() > limit {
		return nil, errTooLarge
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, errTooLarge
	}
	return data, nil
}
