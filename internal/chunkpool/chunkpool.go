// Package chunkpool pools the 1 MiB buffers that file transfers move data
// through: the chunk decoder of Connect's streams (internal/chunkcodec),
// the SDK, the server and the agent.
//
// Why: a fresh 1 MiB allocation per chunk churns the heap, the garbage
// collector and the scavenger (which returns pages to the kernel with
// madvise, and TLB shootdowns are IPIs). On a VM whose fresh pages fault
// expensively (tens of µs per 4 KiB page on the benchmark machine) that was
// the largest single cost of a transfer; reused buffers stay mapped and
// warm in the cache. It is its own package so that the agent, which moves
// file data but no Connect messages, links neither the codec nor the
// protobuf runtime.
package chunkpool

import "sync"

// Size is the capacity of pooled buffers: the largest chunk sbx sends.
const Size = 1 << 20

var pool = sync.Pool{New: func() any { b := make([]byte, 0, Size); return &b }}

// Get returns an empty buffer with room for n bytes: a pooled one when n is
// at most Size.
func Get(n int) []byte {
	if n > Size {
		return make([]byte, 0, n)
	}
	return (*pool.Get().(*[]byte))[:0]
}

// Put hands back b, a buffer from Get (others are ignored unless they have
// the same capacity, which does no harm), once nothing refers to it.
func Put(b []byte) {
	if cap(b) != Size {
		return
	}
	b = b[:0]
	pool.Put(&b)
}
