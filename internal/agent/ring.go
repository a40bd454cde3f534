package agent

import (
	"context"
	"sync"

	"github.com/sbx-run/sbx/internal/sandbox"
)

// chunk is one read of a process's stdout or stderr.
type chunk struct {
	stream sandbox.Stream
	data   []byte
}

// ring keeps the most recent output of one process, up to max bytes, for
// followers and for clients that re-attach later. A follower that has not
// consumed the oldest chunk holds the producer back (like a full pipe), so a
// connected client never loses output; without followers the oldest output
// is dropped.
type ring struct {
	max int

	mu       sync.Mutex
	chunks   []chunk
	base     uint64 // sequence number of chunks[0]
	size     int
	subs     map[*follower]struct{}
	appended chan struct{} // closed and replaced on every append
	consumed chan struct{} // closed and replaced when a follower advances
	closed   bool          // no more output
}

type follower struct{ next uint64 }

func newRing(max int) *ring {
	return &ring{max: max, subs: map[*follower]struct{}{}, appended: make(chan struct{}), consumed: make(chan struct{})}
}

// follow registers a follower that starts at the oldest kept chunk. The
// caller must call unfollow.
func (r *ring) follow() *follower {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &follower{next: r.base}
	r.subs[f] = struct{}{}
	return f
}

func (r *ring) unfollow(f *follower) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.subs, f)
	r.wakeProducer()
}

func (r *ring) wakeProducer() {
	close(r.consumed)
	r.consumed = make(chan struct{})
}

// append adds data (which the ring now owns), waiting while a follower still
// needs the chunk that would be dropped. It gives up waiting when stop is
// closed.
func (r *ring) append(stream sandbox.Stream, data []byte, stop <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for r.size+len(data) > r.max && len(r.chunks) > 0 {
		if r.held() {
			wait := r.consumed
			r.mu.Unlock()
			select {
			case <-wait:
			case <-stop:
			}
			r.mu.Lock()
			if !r.held() || isClosed(stop) {
				r.drop()
			}
			continue
		}
		r.drop()
	}
	r.chunks = append(r.chunks, chunk{stream, data})
	r.size += len(data)
	close(r.appended)
	r.appended = make(chan struct{})
}

func (r *ring) held() bool {
	for f := range r.subs {
		if f.next <= r.base {
			return true
		}
	}
	return false
}

func (r *ring) drop() {
	if len(r.chunks) == 0 {
		return
	}
	r.size -= len(r.chunks[0].data)
	r.chunks[0] = chunk{}
	r.chunks = r.chunks[1:]
	r.base++
	if len(r.chunks) == 0 {
		r.chunks = nil // let the backing array go
	}
}

// bytes returns how much output the ring keeps.
func (r *ring) bytes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.size
}

// close marks the end of the output; followers return once drained.
func (r *ring) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	close(r.appended)
	r.appended = make(chan struct{})
}

// next returns f's next chunk, waiting for one; ok is false at the end of the
// output.
func (r *ring) next(ctx context.Context, f *follower) (c chunk, ok bool, err error) {
	for {
		r.mu.Lock()
		if f.next < r.base {
			f.next = r.base // output dropped before this follower joined
		}
		if i := f.next - r.base; i < uint64(len(r.chunks)) {
			c = r.chunks[i]
			f.next++
			r.wakeProducer()
			r.mu.Unlock()
			return c, true, nil
		}
		if r.closed {
			r.mu.Unlock()
			return chunk{}, false, nil
		}
		wait := r.appended
		r.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return chunk{}, false, ctx.Err()
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
