package runtime

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/state"
)

// EventKind is the kind of an in-band event travelling through a channel in
// order with the records.
type EventKind uint8

const (
	// EventBarrier is a checkpoint barrier.
	EventBarrier EventKind = iota + 1
	// EventCancel is a cancellation marker: checkpoint Barrier.ID was
	// abandoned upstream, so downstream subtasks stop aligning it.
	EventCancel
	// EventEndOfPartition says the sending subtask will send nothing more on
	// this channel.
	EventEndOfPartition
	// EventWatermark carries the sender's watermark (Watermark): no record
	// with a timestamp at or below it follows on this channel.
	EventWatermark
	// EventStatus says the sender is idle (Idle) or active again: an idle
	// channel does not hold the receiver's watermark back.
	EventStatus
	// EventEndOfData says the sender's input really ended (not a stop):
	// no record follows on this channel. It travels before the final
	// checkpoint's barrier, so what operators emit when their input ends
	// (EndOfDataListener) is covered by that checkpoint.
	EventEndOfData
)

func (k EventKind) String() string {
	switch k {
	case EventBarrier:
		return "barrier"
	case EventCancel:
		return "cancellation-marker"
	case EventEndOfPartition:
		return "end-of-partition"
	case EventWatermark:
		return "watermark"
	case EventStatus:
		return "status"
	case EventEndOfData:
		return "end-of-data"
	}
	return "unknown-event"
}

// Event is an in-band control event.
type Event struct {
	Kind      EventKind
	Barrier   checkpoint.Barrier // Barrier (and ID for EventCancel)
	Watermark int64              // EventWatermark
	Idle      bool               // EventStatus
}

// NoTimestamp is the timestamp of a record that has none.
const NoTimestamp int64 = math.MinInt64

// Stamped is a record with its event timestamp: what the edges of a job
// with event time carry (Buffer[Stamped[T]]), so that a timestamp travels
// with its record through channels and across processes.
type Stamped[T any] struct {
	Timestamp int64
	Value     T
}

// Buffer is the unit a channel carries: either a batch of records or one
// event (Records == nil). A record batch is owned by the receiver from the
// moment it is sent until it hands it back with Recycle.
type Buffer[T any] struct {
	Records []T
	Event   Event
}

// IsEvent tells an event from a record batch.
func (b *Buffer[T]) IsEvent() bool { return b.Event.Kind != 0 }

// StampedCodec encodes a timestamped record: the timestamp as a zig-zag
// varint, then the record with c.
func StampedCodec[T any](c state.Codec[T]) state.Codec[Stamped[T]] { return stampedCodec[T]{c} }

type stampedCodec[T any] struct{ c state.Codec[T] }

func (s stampedCodec[T]) Append(dst []byte, r Stamped[T]) []byte {
	return s.c.Append(binary.AppendVarint(dst, r.Timestamp), r.Value)
}

func (s stampedCodec[T]) Decode(src []byte) (Stamped[T], error) {
	ts, n := binary.Varint(src)
	if n <= 0 {
		return Stamped[T]{}, errors.New("bad record timestamp")
	}
	v, err := s.c.Decode(src[n:])
	return Stamped[T]{Timestamp: ts, Value: v}, err
}
