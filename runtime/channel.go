package runtime

import (
	"context"
	"sync"
)

// OutputChannel is the sending end of a channel from one upstream subtask to
// one downstream subtask.
//
// Flow control is credit based: the receiver grants a fixed number of
// credits, one per record buffer it is ready to hold; Send of a record
// buffer blocks while no credit is left, which is how backpressure reaches
// the sender. Events (barriers, cancellation markers, end of partition) need
// no credit and never wait. A remote (TCP) channel implements the same
// contract.
//
// An OutputChannel is used by exactly one sending goroutine.
type OutputChannel[T any] interface {
	// Send enqueues b. For a record buffer, ownership of b.Records passes to
	// the receiver. Send blocks while the channel has no credit and returns
	// ctx.Err() if ctx ends first.
	Send(ctx context.Context, b Buffer[T]) error
	// NewBuffer returns an empty record slice (len 0, cap >= the configured
	// buffer size), reusing one the receiver recycled when it can.
	NewBuffer() []T
}

// InputChannel is the receiving end of a channel; it is read only by the
// task goroutine of the receiving subtask, through its InputGate.
type InputChannel[T any] interface {
	// Poll removes the oldest buffer. ok is false when the channel is empty;
	// more tells whether further buffers are queued behind it.
	Poll() (b Buffer[T], more, ok bool)
	// Recycle hands a processed record slice back for reuse by the sender.
	Recycle(records []T)
}

// LocalChannel is the in-memory channel between two subtasks of the same
// process.
type LocalChannel[T any] struct {
	gate    *InputGate
	index   int // index of this channel in gate
	credits int
	bufSize int

	mu struct {
		sync.Mutex
		queue      []Buffer[T] // FIFO; queue[head:] are live
		head       int
		recordBufs int   // record buffers queued (each holds one credit)
		free       [][]T // recycled record slices
		waiting    bool  // the sender waits for credit
	}
	credit chan struct{} // capacity 1: signalled when credit returns to a waiting sender
}

// NewLocalChannel returns a channel delivering into gate as its channel
// index. credits bounds the record buffers in flight; bufSize is the record
// capacity of new buffers.
func NewLocalChannel[T any](gate *InputGate, index, credits, bufSize int) *LocalChannel[T] {
	if credits < 1 {
		credits = 1
	}
	if bufSize < 1 {
		bufSize = 1
	}
	c := &LocalChannel[T]{gate: gate, index: index, credits: credits, bufSize: bufSize, credit: make(chan struct{}, 1)}
	c.mu.queue = make([]Buffer[T], 0, credits+4)
	return c
}

// Send implements OutputChannel.
func (c *LocalChannel[T]) Send(ctx context.Context, b Buffer[T]) error {
	isRecords := !b.IsEvent()
	c.mu.Lock()
	for isRecords && c.mu.recordBufs >= c.credits {
		c.mu.waiting = true
		c.mu.Unlock()
		select {
		case <-c.credit:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
	if isRecords {
		c.mu.recordBufs++
	}
	wasEmpty := len(c.mu.queue) == c.mu.head
	if c.mu.head > 0 && len(c.mu.queue) == cap(c.mu.queue) {
		// Compact instead of growing: the live part is small.
		n := copy(c.mu.queue, c.mu.queue[c.mu.head:])
		clear(c.mu.queue[n:])
		c.mu.queue = c.mu.queue[:n]
		c.mu.head = 0
	}
	c.mu.queue = append(c.mu.queue, b)
	c.mu.Unlock()
	if wasEmpty {
		c.gate.notify(c.index)
	}
	return nil
}

// NewBuffer implements OutputChannel.
func (c *LocalChannel[T]) NewBuffer() []T {
	c.mu.Lock()
	if n := len(c.mu.free); n > 0 {
		b := c.mu.free[n-1]
		c.mu.free[n-1] = nil
		c.mu.free = c.mu.free[:n-1]
		c.mu.Unlock()
		return b
	}
	c.mu.Unlock()
	return make([]T, 0, c.bufSize)
}

// Poll implements InputChannel.
func (c *LocalChannel[T]) Poll() (b Buffer[T], more, ok bool) {
	c.mu.Lock()
	if c.mu.head == len(c.mu.queue) {
		c.mu.Unlock()
		return b, false, false
	}
	b = c.mu.queue[c.mu.head]
	c.mu.queue[c.mu.head] = Buffer[T]{}
	c.mu.head++
	if c.mu.head == len(c.mu.queue) {
		c.mu.head = 0
		c.mu.queue = c.mu.queue[:0]
	}
	more = c.mu.head != len(c.mu.queue)
	wake := false
	if !b.IsEvent() {
		c.mu.recordBufs--
		if c.mu.waiting {
			c.mu.waiting = false
			wake = true
		}
	}
	c.mu.Unlock()
	if wake {
		select {
		case c.credit <- struct{}{}:
		default:
		}
	}
	return b, more, true
}

// Recycle implements InputChannel.
func (c *LocalChannel[T]) Recycle(records []T) {
	if cap(records) < c.bufSize {
		return
	}
	var zero T
	for i := range records {
		records[i] = zero // let the garbage collector have what records point to
	}
	c.mu.Lock()
	if len(c.mu.free) < c.credits+1 {
		c.mu.free = append(c.mu.free, records[:0])
	}
	c.mu.Unlock()
}

// Queued reports the number of buffers waiting in the channel (for metrics
// and tests).
func (c *LocalChannel[T]) Queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.queue) - c.mu.head
}
