package network

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// InputChannel is the receiving end of a remote channel; it implements
// runtime.InputChannel and delivers into an InputGate exactly as a
// runtime.LocalChannel does (it hands decoded buffers to one), so the gate,
// the barrier handler and the task cannot tell the two apart.
//
// The connection's reader decodes each record batch into a slice the
// channel owns and queues it; it never waits, because a sender only sends
// a batch for which it holds credit. Credit returns to the sender when the
// task recycles the batch. A channel that the barrier handler has blocked
// (aligned checkpoint) is not read, so its credit runs out and its sender
// blocks: alignment backpressures the sender, not the connection.
//
// Poll and Recycle are for the task goroutine that owns the gate.
type InputChannel[T any] struct {
	ep      *Endpoint
	id      ChannelID
	codec   state.Codec[T]
	local   *runtime.LocalChannel[T]
	credits int
	bufSize int
	// bytes counts the record payloads' bytes received
	// (runtime.ChannelBytes).
	bytes atomic.Int64

	mu struct {
		sync.Mutex
		conn        *conn // the sender's connection, once it opened the channel
		outstanding int   // record batches received and not recycled
		free        [][]T // recycled record slices
		ended       bool  // end of partition received
		failed      bool  // reported through OnError
		closed      bool
	}
}

// NewInputChannel registers channel id at e and returns its receiving end,
// which delivers into gate as channel index. credits is the number of
// record batches the channel holds at most (the credit granted to the
// sender); bufSize the usual record capacity of a batch. The sender may
// open the channel before or after this call.
func NewInputChannel[T any](e *Endpoint, id ChannelID, codec state.Codec[T], gate *runtime.InputGate, index, credits, bufSize int) (*InputChannel[T], error) {
	switch {
	case codec == nil:
		return nil, fmt.Errorf("cannot register input channel %s: no codec", id)
	case gate == nil || index < 0 || index >= gate.NumChannels():
		return nil, fmt.Errorf("cannot register input channel %s: no channel %d in the gate", id, index)
	}
	credits, bufSize = min(max(credits, 1), maxCredits), max(bufSize, 1)
	in := &InputChannel[T]{ep: e, id: id, codec: codec, credits: credits, bufSize: bufSize,
		local: runtime.NewLocalChannel[T](gate, index, credits, bufSize)}
	if err := e.register(in); err != nil {
		return nil, fmt.Errorf("cannot register input channel %s: %w", id, err)
	}
	return in, nil
}

// ID is the channel's id.
func (in *InputChannel[T]) ID() ChannelID { return in.id }

// Poll implements runtime.InputChannel.
func (in *InputChannel[T]) Poll() (b runtime.Buffer[T], more, ok bool) { return in.local.Poll() }

// Recycle implements runtime.InputChannel: the batch's slice is reused for
// a later batch, and its credit goes back to the sender.
func (in *InputChannel[T]) Recycle(records []T) {
	clear(records)
	in.mu.Lock()
	if in.mu.outstanding == 0 {
		in.mu.Unlock()
		return // not a batch of this channel
	}
	in.mu.outstanding--
	if cap(records) >= in.bufSize && len(in.mu.free) < in.credits {
		in.mu.free = append(in.mu.free, records[:0])
	}
	c, live := in.mu.conn, !in.mu.failed && !in.mu.closed
	in.mu.Unlock()
	if live && c != nil {
		c.enqueueCredit(in.id, 1)
	}
}

// Queued is the number of buffers received and not polled yet.
func (in *InputChannel[T]) Queued() int { return in.local.Queued() }

// Close unregisters the channel; its sender is told, and later frames are
// dropped. Buffers still queued can be polled.
func (in *InputChannel[T]) Close() {
	in.ep.unregister(in)
	in.mu.Lock()
	if in.mu.closed {
		in.mu.Unlock()
		return
	}
	in.mu.closed = true
	c := in.mu.conn
	in.mu.Unlock()
	if c != nil && c.removeInput(in) {
		c.enqueueClose(in.id, "the receiver closed the channel")
	}
}

func (in *InputChannel[T]) channelID() ChannelID { return in.id }

func (in *InputChannel[T]) initialCredits() int { return in.credits }

func (in *InputChannel[T]) bind(c *conn, typeName string) (fatal bool, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch want := recordType[T](); {
	case in.mu.closed:
		return false, fmt.Errorf("channel %s is closed", in.id)
	case in.mu.conn != nil:
		return false, fmt.Errorf("channel %s is already open (by %s)", in.id, in.mu.conn.peer)
	case typeName != want:
		return true, fmt.Errorf("%s sends records of type %s, the receiver reads %s", c.peer, typeName, want)
	}
	in.mu.conn = c
	return false, nil
}

// doneCtx makes LocalChannel.Send fail instead of waiting, should a sender
// ever exceed its credit: the reader must never block.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// Bytes implements runtime.ChannelBytes: the bytes of the record batches
// received so far.
func (in *InputChannel[T]) Bytes() int64 { return in.bytes.Load() }

func (in *InputChannel[T]) deliverRecords(payload []byte) error {
	in.mu.Lock()
	if in.mu.outstanding >= in.credits {
		in.mu.Unlock()
		return fmt.Errorf("%w: a record batch beyond the %d credits granted", ErrProtocol, in.credits)
	}
	in.mu.outstanding++
	var recs []T
	if n := len(in.mu.free); n > 0 {
		recs = in.mu.free[n-1]
		in.mu.free[n-1] = nil
		in.mu.free = in.mu.free[:n-1]
	}
	in.mu.Unlock()
	recs, err := decodeRecords(payload, in.codec, recs, in.bufSize)
	if err != nil {
		return fmt.Errorf("bad record batch: %w", err)
	}
	in.bytes.Add(int64(len(payload)))
	if err := in.local.Send(doneCtx, runtime.Buffer[T]{Records: recs}); err != nil {
		return fmt.Errorf("%w: a record batch beyond the %d credits granted", ErrProtocol, in.credits)
	}
	return nil
}

func (in *InputChannel[T]) deliverEvent(e runtime.Event) {
	if e.Kind == runtime.EventEndOfPartition {
		in.mu.Lock()
		in.mu.ended = true
		in.mu.Unlock()
	}
	_ = in.local.Send(doneCtx, runtime.Buffer[T]{Event: e}) // events take no credit: never fails
}

func (in *InputChannel[T]) remoteClosed(reason string) {
	in.mu.Lock()
	ended := in.mu.ended
	in.mu.Unlock()
	if !ended {
		in.fail(fmt.Errorf("%w before the end of partition: %q", ErrChannelClosed, reason))
	}
}

// fail reports err through OnError once, unless the channel ended or was
// closed first.
func (in *InputChannel[T]) fail(err error) {
	in.mu.Lock()
	if in.mu.ended || in.mu.closed || in.mu.failed {
		in.mu.Unlock()
		return
	}
	in.mu.failed = true
	in.mu.Unlock()
	in.ep.report(in.id, fmt.Errorf("input channel %s: %w", in.id, err))
}

var _ runtime.InputChannel[int] = (*InputChannel[int])(nil)
