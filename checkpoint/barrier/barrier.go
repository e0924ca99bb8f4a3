// Package barrier decides what a subtask does with the checkpoint barriers,
// cancellation markers and end-of-partition events that arrive on its input
// channels. The handlers are pure state machines: events in, actions out; no
// goroutines, no I/O, no clock (time is passed in).
//
// Aligned (exactly once). The first barrier n blocks its channel: the task
// stops reading it, so records behind the barrier wait. The other channels
// are read on until barrier n has arrived on every channel that has not
// ended (end of partition counts as arrived). Then the handler emits
// Snapshot, and after it Unblock for the channels it blocked: the task
// snapshots before it reads anything behind a barrier. A barrier with a newer
// id, or a cancellation marker, abandons the alignment: Abort, then Unblock.
// Barriers of checkpoints already taken or abandoned are ignored.
//
// At least once. Nothing is ever blocked. The handler counts barrier n per
// channel and emits Snapshot when it has arrived on every open channel.
// Several checkpoints may be counted at once; when one completes, older
// incomplete ones are aborted first.
//
// Action order (both handlers): Abort of an older checkpoint, Unblock of its
// channels, then what the newer event itself needs (Block, or Snapshot
// followed by Unblock). An Abort is emitted at most once per checkpoint.
// OnAbort (the coordinator already aborted the checkpoint) unblocks without
// emitting Abort: the coordinator knows, and every task hears it directly.
package barrier

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// Handler decides, for one subtask with a fixed number of input channels,
// what to do with barriers, cancellation markers and end-of-partition
// events. It is not safe for concurrent use: the task goroutine owns it.
type Handler interface {
	OnBarrier(now time.Time, channel int, b checkpoint.Barrier) []Action
	OnCancellation(now time.Time, channel int, id checkpoint.ID) []Action
	OnEndOfPartition(now time.Time, channel int) []Action
	// OnAbort: the coordinator aborted checkpoint id; stop aligning it.
	OnAbort(now time.Time, id checkpoint.ID) []Action
	// Blocked reports whether the channel must not be read now.
	Blocked(channel int) bool
	// Pending returns the newest checkpoint being aligned or counted.
	Pending() (checkpoint.ID, bool)
}

// Action is something the task must do.
type Action interface{ isAction() }

// Block: stop reading Channel.
type Block struct{ Channel int }

// Unblock: resume reading Channels (ascending).
type Unblock struct{ Channels []int }

// Snapshot: take the snapshot of checkpoint Barrier.ID now and forward the
// barrier downstream.
type Snapshot struct {
	Barrier checkpoint.Barrier
	// AlignmentDuration is the time from the first barrier of the checkpoint
	// to the last (0 with one channel).
	AlignmentDuration time.Duration
	// StartDelay is the time from the trigger (Barrier.Timestamp) to the
	// arrival of the first barrier of the checkpoint.
	StartDelay time.Duration
}

// Abort: checkpoint ID is abandoned in this subtask; decline it and forward
// a cancellation marker downstream.
type Abort struct {
	ID     checkpoint.ID
	Reason string
}

func (Block) isAction()    {}
func (Unblock) isAction()  {}
func (Snapshot) isAction() {}
func (Abort) isAction()    {}

func (a Block) String() string   { return fmt.Sprintf("block ch=%d", a.Channel) }
func (a Unblock) String() string { return fmt.Sprintf("unblock ch=%v", a.Channels) }
func (a Snapshot) String() string {
	return fmt.Sprintf("snapshot id=%d alignment=%s start-delay=%s", a.Barrier.ID, a.AlignmentDuration, a.StartDelay)
}
func (a Abort) String() string { return fmt.Sprintf("abort id=%d reason=%q", a.ID, a.Reason) }

// New returns the handler for mode.
func New(mode checkpoint.Mode, numChannels int) Handler {
	if mode == checkpoint.AtLeastOnce {
		return NewAtLeastOnce(numChannels)
	}
	return NewAligned(numChannels)
}

func startDelay(now time.Time, b checkpoint.Barrier) time.Duration {
	if b.Timestamp.IsZero() || now.Before(b.Timestamp) {
		return 0
	}
	return now.Sub(b.Timestamp)
}
