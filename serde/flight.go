package serde

import (
	"context"
	"sync"
)

// flight caches successful lookups by key and collapses concurrent misses
// for one key into a single call of the lookup function. Failures are
// handed to every caller waiting on that call and then forgotten, so the
// next miss asks again.
type flight[K comparable, V any] struct {
	mu    sync.Mutex
	done  map[K]V
	calls map[K]*call[V]
}

type call[V any] struct {
	finished chan struct{}
	v        V
	err      error
}

// get returns the cached value for k, or joins or starts the lookup of k.
// The lookup runs on its own goroutine so that a caller whose ctx ends
// leaves it running for the others; lookup must bound its own duration.
func (f *flight[K, V]) get(ctx context.Context, k K, lookup func() (V, error)) (V, error) {
	f.mu.Lock()
	if v, ok := f.done[k]; ok {
		f.mu.Unlock()
		return v, nil
	}
	c, ok := f.calls[k]
	if !ok {
		if f.calls == nil {
			f.calls = make(map[K]*call[V])
			f.done = make(map[K]V)
		}
		c = &call[V]{finished: make(chan struct{})}
		f.calls[k] = c
		go f.run(k, c, lookup)
	}
	f.mu.Unlock()

	select {
	case <-c.finished:
		return c.v, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

func (f *flight[K, V]) run(k K, c *call[V], lookup func() (V, error)) {
	c.v, c.err = lookup()
	f.mu.Lock()
	if c.err == nil {
		f.done[k] = c.v
	}
	delete(f.calls, k)
	f.mu.Unlock()
	close(c.finished)
}
