package network

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// OutputChannel is the sending end of a remote channel; it implements
// runtime.OutputChannel. Records and events travel as frames over the
// connection to the receiving process, in the order of the Send calls.
//
// Flow control is the one of runtime.LocalChannel: Send of a record buffer
// takes one credit and blocks while there is none; the receiver grants its
// credits when it registers the channel and returns one each time its task
// recycles a buffer. Events need no credit and never wait, not even before
// the receiver has registered the channel (they are held until it has).
//
// Like every OutputChannel it is used by one sending goroutine. Send fails
// once the connection is lost or the receiver closed the channel.
type OutputChannel[T any] struct {
	id      ChannelID
	c       *conn
	codec   state.Codec[T]
	bufSize int
	credit  chan struct{} // capacity 1: signalled on credit and on failure
	// bytes counts the record frames' bytes sent (runtime.ChannelBytes).
	bytes atomic.Int64

	// Owned by the sending goroutine.
	scratch []byte // the frame being built
	free    [][]T  // record slices for NewBuffer

	mu struct {
		sync.Mutex
		credits    int
		opened     bool   // the receiver granted credit at least once
		early      []byte // event frames sent before opened
		closeEarly bool   // Close came before opened: close once flushed
		closed     bool
		err        error
		// waiting is true while Send waits for credit: the event tests
		// wait for instead of sleeping.
		waiting bool
	}
}

// NewOutputChannel opens channel id to the endpoint listening at addr,
// dialing a connection unless e already has one to addr (all channels to
// one process share it). bufSize is the record capacity of NewBuffer; the
// receiver decides the credits. ctx bounds dialing.
func NewOutputChannel[T any](ctx context.Context, e *Endpoint, addr string, id ChannelID, codec state.Codec[T], bufSize int) (*OutputChannel[T], error) {
	if codec == nil {
		return nil, fmt.Errorf("cannot open output channel %s: no codec", id)
	}
	c, err := e.connect(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("cannot open output channel %s: %w", id, err)
	}
	o := &OutputChannel[T]{id: id, c: c, codec: codec, bufSize: max(bufSize, 1), credit: make(chan struct{}, 1)}
	if err := c.addOutput(id, o); err != nil {
		return nil, fmt.Errorf("cannot open output channel %s: %w", id, err)
	}
	if err := c.enqueue(appendText(nil, frameOpen, id, recordType[T](), maxTypeLen)); err != nil {
		c.removeOutput(id)
		return nil, fmt.Errorf("cannot open output channel %s: %w", id, err)
	}
	return o, nil
}

// recordType names T in open frames, so that a receiver expecting another
// type refuses the channel instead of decoding garbage.
func recordType[T any]() string { return reflect.TypeFor[T]().String() }

// ID is the channel's id.
func (o *OutputChannel[T]) ID() ChannelID { return o.id }

// Send implements runtime.OutputChannel. After a successful Send of a
// record buffer its slice is encoded and reused by NewBuffer; after an
// error the caller keeps it.
func (o *OutputChannel[T]) Send(ctx context.Context, b runtime.Buffer[T]) error {
	if b.IsEvent() {
		o.scratch = appendEvent(o.scratch[:0], o.id, b.Event)
		o.mu.Lock()
		if err := o.mu.err; err != nil {
			o.mu.Unlock()
			return err
		}
		if !o.mu.opened {
			o.mu.early = append(o.mu.early, o.scratch...)
			o.mu.Unlock()
			return nil
		}
		o.mu.Unlock()
		return o.enqueue()
	}
	o.mu.Lock()
	for o.mu.credits == 0 && o.mu.err == nil {
		o.mu.waiting = true
		o.mu.Unlock()
		select {
		case <-o.credit:
		case <-ctx.Done():
			o.mu.Lock()
			o.mu.waiting = false
			o.mu.Unlock()
			return ctx.Err()
		}
		o.mu.Lock()
		o.mu.waiting = false
	}
	if err := o.mu.err; err != nil {
		o.mu.Unlock()
		return err
	}
	o.mu.credits--
	o.mu.Unlock()

	o.scratch = appendRecords(o.scratch[:0], o.id, o.codec, b.Records)
	if size := len(o.scratch) - headerLen; size > o.c.maxSend {
		o.mu.Lock()
		o.mu.credits++
		o.mu.Unlock()
		return fmt.Errorf("cannot send on channel %s to %s: a batch of %d records takes %d bytes, over the receiver's frame limit of %d",
			o.id, o.c.peer, len(b.Records), size, o.c.maxSend)
	}
	if err := o.enqueue(); err != nil {
		return err
	}
	o.bytes.Add(int64(len(o.scratch)))
	if cap(b.Records) >= o.bufSize && len(o.free) < 2 {
		clear(b.Records)
		o.free = append(o.free, b.Records[:0])
	}
	return nil
}

// Bytes implements runtime.ChannelBytes: the bytes of the record frames
// sent so far.
func (o *OutputChannel[T]) Bytes() int64 { return o.bytes.Load() }

func (o *OutputChannel[T]) enqueue() error {
	if err := o.c.enqueue(o.scratch); err != nil {
		return fmt.Errorf("cannot send on channel %s: %w", o.id, err)
	}
	return nil
}

// NewBuffer implements runtime.OutputChannel.
func (o *OutputChannel[T]) NewBuffer() []T {
	if n := len(o.free); n > 0 {
		b := o.free[n-1]
		o.free[n-1] = nil
		o.free = o.free[:n-1]
		return b
	}
	return make([]T, 0, o.bufSize)
}

// Close releases the channel: frames already sent still arrive (also
// events held for a receiver that has not registered yet), then the
// receiver learns that the sender closed the channel. A channel closed
// before the end of partition fails at the receiver. Send fails after
// Close. Close does not close the shared connection.
func (o *OutputChannel[T]) Close() {
	o.mu.Lock()
	if o.mu.closed {
		o.mu.Unlock()
		return
	}
	o.mu.closed = true
	if o.mu.err == nil {
		o.mu.err = fmt.Errorf("channel %s: %w", o.id, errOutputClosed)
	}
	if !o.mu.opened && len(o.mu.early) > 0 {
		o.mu.closeEarly = true // grant flushes and closes
		o.mu.Unlock()
		return
	}
	o.mu.Unlock()
	if o.c.removeOutput(o.id) != nil {
		o.c.enqueueClose(o.id, "the sender closed the channel")
	}
}

var errOutputClosed = errors.New("output channel closed")

// grant adds credit from the receiver; the first grant opens the channel.
// It runs on the connection's reader.
func (o *OutputChannel[T]) grant(n uint32) {
	o.mu.Lock()
	if !o.mu.opened {
		o.mu.opened = true
		if len(o.mu.early) > 0 {
			_ = o.c.enqueue(o.mu.early) // a failure of the connection fails o too
			o.mu.early = nil
		}
		if o.mu.closeEarly {
			o.mu.Unlock()
			o.c.removeOutput(o.id)
			o.c.enqueueClose(o.id, "the sender closed the channel")
			return
		}
	}
	o.mu.credits += int(n)
	o.mu.Unlock()
	o.signal()
}

func (o *OutputChannel[T]) fail(err error) {
	o.mu.Lock()
	if o.mu.err == nil {
		o.mu.err = fmt.Errorf("channel %s: %w", o.id, err)
	}
	o.mu.early = nil
	o.mu.Unlock()
	o.signal()
}

func (o *OutputChannel[T]) signal() {
	select {
	case o.credit <- struct{}{}:
	default:
	}
}

var _ runtime.OutputChannel[int] = (*OutputChannel[int])(nil)
