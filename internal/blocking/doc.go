// Package blocking follows Consul and Nomad blocking queries the way
// consul-template's watch/view.go does, and holds the one backoff every
// retry loop of fleetplan uses.
//
// A Loop runs one query until its context ends:
//
//	    +--------------------------------------------------+
//	    v                                                  |
//	 pacing --(min interval since the last call, jitter)--> fetch(waitIndex)
//	                                                        |   |
//	ok, index moved: publish, waitIndex = index  <----------+   |
//	ok, index same:  ignore (the wait timed out)                |
//	ok, index went backwards: publish, waitIndex = 0            |
//	error: failures++, wait RetryIn(failures) (grows, capped) <-+
//	       the first success after errors resets failures
//
// Every wait is cancelled by the context. Time and jitter come from a Clock,
// which tests replace.
package blocking
