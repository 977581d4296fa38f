package hcl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Files a policy names (the jobspec, a probe's input_file) are resolved
// against the policy's folder, and every file fleetplan reads for a policy
// (the policy itself included) is read with a size limit, so that a wrong
// path (a model, a log, /dev/zero) is reported instead of being read.

// Size limits of the files a policy brings in (invariant I10: bad input
// gets a clear error and changes nothing).
const (
	// MaxPolicyFileSize bounds a policy file: a policy is a few kilobytes.
	MaxPolicyFileSize = 1 << 20
	// MaxJobspecSize bounds the jobspec a policy names: a Nomad jobspec is
	// a few kilobytes, and the whole file is sent to the Nomad server.
	MaxJobspecSize = 1 << 20
	// maxInputFileSize bounds a functional probe's input_file.
	maxInputFileSize = 1 << 20
)

// resolve makes a path from the policy absolute, relative to the policy
// file's folder.
func (d *decoder) resolve(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(d.dir, p)
}

// errTooLarge matches (errors.Is) the *tooLargeError of a file above its
// limit.
var errTooLarge = errors.New("file too large")

// tooLargeError says how large a file above its limit is.
type tooLargeError struct {
	// size is the file's size, or -1 when only "more than limit" is known
	// (a pipe, or a file that grew while it was read).
	size, limit int64
}

func (e *tooLargeError) Error() string {
	if e.size < 0 {
		return fmt.Sprintf("file too large: more than %d bytes", e.limit)
	}
	return fmt.Sprintf("file too large: %d bytes, more than %d", e.size, e.limit)
}

func (e *tooLargeError) Is(target error) bool { return target == errTooLarge }

// errNotRegular is returned by readRegularFile for anything but a regular
// file: a policy must not make fleetplan read a device or wait on a pipe.
var errNotRegular = errors.New("not a regular file")

// readRegularFile reads a regular file of at most limit bytes.
func readRegularFile(path string, limit int64) ([]byte, error) {
	return readFile(path, limit, true)
}

// readPolicyFile reads a policy file of at most MaxPolicyFileSize bytes.
// Unlike the files a policy names, the policy itself may come from a pipe
// (fleetplan validate <(generate-policy)), since the operator chose it; its
// size is bounded all the same.
func readPolicyFile(path string) ([]byte, error) {
	return readFile(path, MaxPolicyFileSize, false)
}

func readFile(path string, limit int64, regularOnly bool) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	regular := info.Mode().IsRegular()
	if regularOnly && !regular {
		return nil, errNotRegular
	}
	if regular && info.Size() > limit {
		return nil, &tooLargeError{size: info.Size(), limit: limit}
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
		return nil, &tooLargeError{size: -1, limit: limit}
	}
	return data, nil
}

// sizeText writes a file size for people: "3 MiB (3145728 bytes)", or
// "more than 1 MiB" when only that is known.
func sizeText(size, limit int64) string {
	if size < 0 {
		return "more than " + bytesText(limit)
	}
	return fmt.Sprintf("%s (%d bytes)", bytesText(size), size)
}

// bytesText writes a byte count in the largest binary unit it reaches.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmtNum(roundTo(float64(n)/(1<<30), 1)) + " GiB"
	case n >= 1<<20:
		return fmtNum(roundTo(float64(n)/(1<<20), 1)) + " MiB"
	case n >= 1<<10:
		return fmtNum(roundTo(float64(n)/(1<<10), 1)) + " KiB"
	}
	return fmt.Sprintf("%d bytes", n)
}

func roundTo(v float64, decimals int) float64 {
	p := 1.0
	for range decimals {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}
