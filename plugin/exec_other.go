//go:build !unix

package plugin

import "os/exec"

// setProcessGroup is a no-op where there are no process groups: the
// command alone is killed, and cmd.WaitDelay bounds the wait for its
// children.
func setProcessGroup(*exec.Cmd) {}
