//go:build !unix

package registry

import "time"

// cpuTime is unknown here.
func cpuTime() time.Duration { return 0 }
