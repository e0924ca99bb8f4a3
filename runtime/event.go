package runtime

import "github.com/weirstream/weir/checkpoint"

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
)

func (k EventKind) String() string {
	switch k {
	case EventBarrier:
		return "barrier"
	case EventCancel:
		return "cancellation-marker"
	case EventEndOfPartition:
		return "end-of-partition"
	}
	return "unknown-event"
}

// Event is an in-band control event.
type Event struct {
	Kind    EventKind
	Barrier checkpoint.Barrier // Barrier (and ID for EventCancel)
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
