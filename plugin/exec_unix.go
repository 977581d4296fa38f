//go:build unix

package plugin

import (
	"os/exec"
	"syscall"
)

// setProcessGroup makes the command the leader of its own process group
// and cancels it by killing the whole group, so that a script's children
// (a sleep, a curl) do not outlive its timeout.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
