package runtime

import (
	"sync"
	"sync/atomic"
)

// Queue is an unbounded multi-producer, single-consumer queue used for
// control messages (mailboxes, acknowledgements). Put never blocks, so a
// control message can never deadlock against backpressure in the data plane.
type Queue[T any] struct {
	mu struct {
		sync.Mutex
		items []T
	}
	signal chan struct{} // capacity 1: "something was put since the last drain"
	size   atomic.Int64
}

// NewQueue returns an empty queue.
func NewQueue[T any]() *Queue[T] {
	return &Queue[T]{signal: make(chan struct{}, 1)}
}

// Put appends v. It never blocks.
func (q *Queue[T]) Put(v T) {
	q.mu.Lock()
	q.mu.items = append(q.mu.items, v)
	q.size.Add(1)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// Empty reports whether nothing is queued; a cheap check for hot loops.
func (q *Queue[T]) Empty() bool { return q.size.Load() == 0 }

// C is signalled after a Put; the consumer then calls Drain.
func (q *Queue[T]) C() <-chan struct{} { return q.signal }

// Drain removes and returns every queued item, oldest first, appending them
// to dst.
func (q *Queue[T]) Drain(dst []T) []T {
	q.mu.Lock()
	dst = append(dst, q.mu.items...)
	q.size.Add(-int64(len(q.mu.items)))
	clear(q.mu.items)
	q.mu.items = q.mu.items[:0]
	q.mu.Unlock()
	return dst
}
