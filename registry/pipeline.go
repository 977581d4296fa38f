package registry

// pipeline runs produce on a second goroutine and consume on the calling
// one, handing items over in chunks (4 of 512 in flight), so that the two
// halves of a memory-bound loop overlap on two cores. emit may only be
// called from produce; what produce writes besides its items is visible to
// the caller once pipeline returns.
func pipeline[T any](produce func(emit func(T)), consume func(*T)) {
	const inFlight, chunk = 4, 512
	full := make(chan []T, inFlight)
	free := make(chan []T, inFlight)
	for range inFlight {
		free <- make([]T, 0, chunk)
	}
	go func() {
		defer close(full)
		c := <-free
		produce(func(it T) {
			c = append(c, it)
			if len(c) == chunk {
				full <- c
				c = <-free
			}
		})
		full <- c
	}()
	for c := range full {
		for i := range c {
			consume(&c[i])
		}
		clear(c)      // drop the references for the collector
		free <- c[:0] // never blocks: free holds every chunk
	}
}
