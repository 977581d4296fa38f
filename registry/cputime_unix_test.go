//go:build unix

package registry

import (
	"syscall"
	"time"
)

// cpuTime is the CPU time the process used so far (every thread: the
// pipeline's second goroutine and the collector too), 0 when unknown.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
