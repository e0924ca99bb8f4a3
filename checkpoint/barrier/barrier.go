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
// snapshots before it reads anything behind a barrier. One checkpoint is
// aligned at a time. A barrier of a newer checkpoint abandons the alignment
// (Abort, Unblock) and starts aligning the newer one; so does a
// cancellation marker of the aligned or a newer checkpoint, which also
// aborts the newer one. Barriers and markers of a checkpoint older than or
// equal to the newest one read so far are stale and ignored.
//
// At least once. Checkpoints never block: the handler counts barrier n per
// channel and emits Snapshot when it has arrived on every open channel.
// Savepoints are always aligned (a savepoint must hold exactly the records
// before it, whatever the job's mode): a savepoint barrier blocks its
// channel until it arrived everywhere, then Snapshot and Unblock; aborting
// a savepoint (marker, OnAbort, a newer checkpoint completing) unblocks its
// channels.
// Several checkpoints may be counted at once. When one completes, the
// pending ones older than it end with it: checkpoints silently (no Abort,
// so no decline: the coordinator subsumes them when the newer one
// completes), savepoints with an Abort (nothing subsumes a savepoint).
// When one event completes several (end of partition), only the newest is
// snapshotted. A cancellation marker of checkpoint n ends the older
// pending checkpoints the same way (the upstream abandoned them too).
// Barriers of checkpoints snapshotted or abandoned here, and of older ones
// than the newest snapshotted, are ignored.
//
// Action order, both handlers: first what ends the older checkpoint (Abort,
// then Unblock of its channels), then what the event does for the newer one
// (Block; or Snapshot, then Unblock). Examples, aligned, 3 channels:
//
//	barrier 2 on ch 1 while aligning 1 (ch 0 blocked): Abort{1} Unblock{[0]} Block{1}
//	last barrier 1, on ch 2 (ch 0, 1 blocked):          Snapshot{1} Unblock{[0 1]}
//	cancellation marker 2 while aligning 1:             Abort{1} Unblock{[0]} Abort{2}
//
// Abort is emitted at most once per checkpoint, so its cancellation marker is
// forwarded downstream once; every checkpoint a handler starts to align or
// count ends in exactly one Snapshot or Abort, unless the coordinator
// aborted it (below).
//
// OnAbort (the coordinator aborted checkpoint id, notifyCheckpointAborted)
// emits no Abort: the coordinator knows, and every task hears of it
// directly. Aligned, it ends the alignment of id (Unblock only); a
// checkpoint not read yet is remembered and its barriers are ignored, without
// making older checkpoints stale. A barrier of such a checkpoint still ends
// the alignment of an older one (Abort, Unblock), as it proves the channel
// will not deliver the older barrier any more. At least once, the count of id
// is dropped and its barriers are ignored.
//
// Defensive choices for events that a correct task and upstream do not
// produce: a second barrier of a checkpoint on the same channel counts once
// (aligned: the channel is blocked, so it is not even read); any event on a
// channel after its end of partition is ignored, as is a repeated end of
// partition. A channel index outside [0, numChannels) is a bug in the
// caller and panics.
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
	// Cancelled is set when an upstream cancellation marker caused the
	// abort (the upstream task declined on its own); otherwise a newer
	// checkpoint overtook this one here.
	Cancelled bool
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
