package runtime

import (
	"io"
	"log/slog"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// Collector receives the records an operator emits. Collect never returns an
// error: an operator that fails reports through OperatorContext.Fail, and a
// cancelled output drops records (the job is failing over anyway).
type Collector[T any] interface {
	Collect(T)
}

// Operator is the lifecycle of one operator instance in a chain. Every
// method runs on the owning task goroutine, between two records, so an
// operator needs no locks for its own state.
type Operator interface {
	// Open prepares the operator; restored state is in ctx.
	Open(ctx *OperatorContext) error
	// SnapshotState is the synchronous part of a checkpoint: it must only
	// freeze a consistent view (copy-on-write, small copies) and return; the
	// expensive writing happens in OperatorSnapshot.Keyed.WriteKeyGroups on another
	// goroutine.
	SnapshotState(id checkpoint.ID) (OperatorSnapshot, error)
	// NotifyCheckpointComplete tells the operator checkpoint id is durable
	// (sinks commit here).
	NotifyCheckpointComplete(id checkpoint.ID) error
	// NotifyCheckpointAborted tells the operator checkpoint id will never
	// complete.
	NotifyCheckpointAborted(id checkpoint.ID) error
	// Finish is called once at the end of input: emit anything buffered.
	Finish() error
	// Close releases resources; it is called after Finish, and also when
	// the task is cancelled or fails.
	Close() error
}

// EndOfDataListener is implemented by operators that act when their input
// really ends (every input channel delivered end of data; for a source
// chain, its reader reached the end): an event-time operator has seen the
// maximum watermark by then, and EndOfData may emit what is left (a user
// function's Finish hook). It runs before the final checkpoint, so what it
// emits is covered by that checkpoint. It is not called when the job is
// stopped with a savepoint: the state stays in the savepoint instead.
type EndOfDataListener interface {
	EndOfData() error
}

// BarrierSnapshotter is implemented by operators whose snapshot depends on
// the barrier (a savepoint is always written in the canonical format); the
// task calls SnapshotStateFor instead of SnapshotState.
type BarrierSnapshotter interface {
	SnapshotStateFor(b checkpoint.Barrier) (OperatorSnapshot, error)
}

// DeclineError is returned by SnapshotState when the snapshot could not be
// taken but the operator's state is intact (a local disk error while
// freezing state): the task declines the checkpoint and keeps running,
// instead of failing.
type DeclineError struct{ Err error }

func (e *DeclineError) Error() string { return e.Err.Error() }
func (e *DeclineError) Unwrap() error { return e.Err }

// KeyedSnapshot is the frozen view of an operator's keyed state. WriteKeyGroups runs
// on a background goroutine while the task keeps processing records.
type KeyedSnapshot interface {
	// WriteKeyGroups writes the key groups of the operator's range and returns the
	// offset of each key group in the stream.
	WriteKeyGroups(w io.Writer) (offsets []int64, err error)
	// Release frees the frozen view; called exactly once, after WriteKeyGroups or
	// instead of it.
	Release()
}

// OperatorSnapshot is what SnapshotState returns.
type OperatorSnapshot struct {
	List     []checkpoint.ListStateSnapshot
	Keyed    KeyedSnapshot // nil if the operator has no keyed state
	KeyRange checkpoint.KeyGroupRange
}

// OperatorContext is what an operator instance learns about itself and its
// restored state when it opens.
type OperatorContext struct {
	JobName        string
	TaskName       string
	OperatorUID    string
	OperatorName   string
	Subtask        int
	Parallelism    int
	MaxParallelism int
	Attempt        int
	// Checkpointing is true when the job takes checkpoints (in Mode) every
	// CheckpointInterval (0: triggered by hand only).
	Checkpointing      bool
	CheckpointInterval time.Duration
	Mode               checkpoint.Mode
	// KeyGroups is the key group range of this subtask (keyed operators).
	KeyGroups checkpoint.KeyGroupRange
	// Restored is true when the job restored from RestoredCheckpoint.
	Restored           bool
	RestoredCheckpoint checkpoint.ID
	RestoredKind       checkpoint.Kind
	// RestoredList is the operator list state assigned to this subtask.
	RestoredList []checkpoint.ListStateSnapshot
	// RestoredOwned is true when the job owns the restored checkpoint (a
	// checkpoint of this job in its own storage): incremental snapshots may
	// then keep referencing its shared files. A checkpoint the job does not
	// own (a savepoint, another job's or another storage's checkpoint) may
	// be deleted by its owner, so nothing the job writes depends on it
	// (Flink's no-claim mode).
	RestoredOwned bool
	// RestoredKeyed are the keyed state handles that intersect KeyGroups.
	RestoredKeyed []checkpoint.KeyedStateHandle
	// OpenStream reads a restored state stream.
	OpenStream func(checkpoint.StreamHandle) (io.ReadCloser, error)
	// Fail fails the task with err; used by code running inside Collect.
	Fail   func(err error)
	Logger *slog.Logger
	// EventTime is set when the job uses event time. Timestamp is the
	// task's slot holding the timestamp of the record being processed
	// (NoTimestamp without one): an operator reads it in Collect and sets
	// it before it emits a record with another timestamp.
	EventTime bool
	Timestamp *int64
	// ProcessingTime runs callbacks on the task goroutine at a processing
	// time (timers, periodic watermarks, flushes on time).
	ProcessingTime ProcessingTimeService
}

// ReadStatus is what a source driver reports after a read.
type ReadStatus uint8

const (
	// MoreAvailable: call Read again right away.
	MoreAvailable ReadStatus = iota
	// NothingAvailable: wait on Available (or the mailbox) before reading again.
	NothingAvailable
	// EndOfInput: the source has no more records, ever.
	EndOfInput
)

// SourceDriver feeds a source chain: Read pulls what is available from the
// source's reader and pushes it into the chain's first operator.
type SourceDriver interface {
	Read() (ReadStatus, error)
	Available() <-chan struct{}
}

// Chain is one subtask's instance of a vertex: operators head first.
type Chain struct {
	Operators []Operator
	// Input is the Collector[IN] the task feeds records from its input gate
	// into (nil for sources).
	Input any
	// Source drives a source vertex (nil otherwise).
	Source SourceDriver
}
