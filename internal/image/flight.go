package image

import (
	"context"
	"sync"
)

// group deduplicates concurrent work by key, like singleflight, with two
// additions: every waiter receives the progress events of the shared work,
// and the work is cancelled only when all of its waiters have gone (one
// impatient caller does not fail the others).
type group[T any] struct {
	mu sync.Mutex
	m  map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{}
	val     T
	err     error
	cancel  context.CancelFunc
	waiters int
	nextID  int
	subs    map[int]func(Progress)
}

// emit sends p to every subscribed waiter.
func (g *group[T]) emit(c *call[T], p Progress) {
	g.mu.Lock()
	subs := make([]func(Progress), 0, len(c.subs))
	for _, f := range c.subs {
		subs = append(subs, f)
	}
	g.mu.Unlock()
	for _, f := range subs {
		f(p)
	}
}

// do runs fn once per key among concurrent callers and returns its result to
// all of them. progress (may be nil) receives the events fn emits.
func (g *group[T]) do(ctx context.Context, key string, progress func(Progress),
	fn func(ctx context.Context, emit func(Progress)) (T, error)) (T, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[string]*call[T]{}
	}
	c, ok := g.m[key]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call[T]{done: make(chan struct{}), cancel: cancel, subs: map[int]func(Progress){}}
		g.m[key] = c
		go func() {
			c.val, c.err = fn(fctx, func(p Progress) { g.emit(c, p) })
			g.mu.Lock()
			if g.m[key] == c {
				delete(g.m, key)
			}
			g.mu.Unlock()
			cancel()
			close(c.done)
		}()
	}
	c.waiters++
	id := c.nextID
	c.nextID++
	if progress != nil {
		c.subs[id] = progress
	}
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		g.mu.Lock()
		delete(c.subs, id)
		c.waiters--
		last := c.waiters == 0
		if last {
			// Nobody wants the result any more: stop the work, and let the
			// next caller start afresh instead of joining a dying call.
			c.cancel()
			if g.m[key] == c {
				delete(g.m, key)
			}
		}
		g.mu.Unlock()
		if last {
			// Wait for the work to clean up after itself (temp dirs), so
			// that no work outlives all of its callers.
			<-c.done
		}
		var zero T
		return zero, ctx.Err()
	}
}

// serialize wraps a progress callback so that it is never called
// concurrently (layers download in parallel); nil stays nil.
func serialize(f func(Progress)) func(Progress) {
	if f == nil {
		return nil
	}
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		f(p)
	}
}
