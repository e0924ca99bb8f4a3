package weir

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/runtime"
)

// Sink is where a stream ends: something outside weir that receives its
// records. A Sink creates one SinkWriter per parallel subtask.
type Sink[T any] interface {
	CreateWriter(ctx SinkContext) (SinkWriter[T], error)
}

// SinkContext tells a sink writer who it is and what it restored.
type SinkContext struct {
	JobName     string
	OperatorUID string
	Subtask     int
	Parallelism int
	Attempt     int
	// Checkpointing is true when the job takes checkpoints (every
	// CheckpointInterval); a transactional sink then commits on checkpoint
	// completion, otherwise at the end of input.
	Checkpointing      bool
	CheckpointInterval time.Duration
	// Restored is true when the job restored from RestoredCheckpoint, a
	// checkpoint or savepoint (RestoredKind).
	Restored           bool
	RestoredCheckpoint checkpoint.ID
	RestoredKind       checkpoint.Kind
	// RestoredState is the state this subtask's writer snapshotted at
	// RestoredCheckpoint (redistributed evenly when the parallelism
	// changed), or, for a sink with Union redistribution, the state of
	// every subtask.
	RestoredState [][]byte
	Logger        *slog.Logger
	// ProcessingTime runs callbacks on the subtask's goroutine at a
	// processing time, never concurrently with Write, snapshots or
	// checkpoint notifications: a buffering writer flushes on time with it
	// (schedule the next flush from the callback). Call its methods only
	// from the writer's own methods or callbacks. Callbacks stop when the
	// subtask ends: none runs after Close, and none is checkpointed.
	ProcessingTime ProcessingTimeService
}

// SinkWriter receives the records of one subtask, on that subtask's
// goroutine. It may also implement:
//
//   - SnapshottingWriter, to keep state (transaction handles) in checkpoints;
//   - CheckpointListener, to commit when a checkpoint completes;
//   - Finisher, to flush at the end of input.
//
// To flush on time, a writer schedules callbacks with
// SinkContext.ProcessingTime; they run on the same goroutine as Write.
type SinkWriter[T any] interface {
	Write(record T) error
	Close() error
}

// SnapshottingWriter is a SinkWriter with state in checkpoints.
type SnapshottingWriter interface {
	// SnapshotState is called when the barrier of checkpoint id passes the
	// sink: every record written before it belongs to the checkpoint.
	SnapshotState(id checkpoint.ID) ([][]byte, error)
}

// SinkStateRedistribution is implemented by sinks whose writers' state must
// not be split on rescale: with checkpoint.Union every new subtask sees the
// state of every old subtask and picks what it is responsible for (the
// two-phase-commit sink does). The default is checkpoint.SplitEvenly.
type SinkStateRedistribution interface {
	StateRedistribution() checkpoint.Redistribution
}

// CheckpointListener is told when checkpoints complete or are aborted.
// Sources, sinks and functions may implement it.
type CheckpointListener interface {
	NotifyCheckpointComplete(id checkpoint.ID) error
	NotifyCheckpointAborted(id checkpoint.ID) error
}

// Finisher is told that its input has ended.
type Finisher interface {
	Finish() error
}

const sinkStateName = "sink-state"

type sinkOp[T any] struct {
	sink Sink[T]
	w    SinkWriter[T]
	fail func(error)
	name string
}

func (o *sinkOp[T]) Open(ctx *runtime.OperatorContext) error {
	o.fail = ctx.Fail
	o.name = ctx.OperatorName
	sc := SinkContext{JobName: ctx.JobName, OperatorUID: ctx.OperatorUID, Subtask: ctx.Subtask,
		Parallelism: ctx.Parallelism, Attempt: ctx.Attempt, Checkpointing: ctx.Checkpointing, CheckpointInterval: ctx.CheckpointInterval,
		Restored: ctx.Restored, RestoredCheckpoint: ctx.RestoredCheckpoint, RestoredKind: ctx.RestoredKind, Logger: ctx.Logger,
		ProcessingTime: ctx.ProcessingTime}
	for _, l := range ctx.RestoredList {
		if l.Name == sinkStateName {
			sc.RestoredState = append(sc.RestoredState, l.Entries...)
		}
	}
	w, err := o.sink.CreateWriter(sc)
	if err != nil {
		return fmt.Errorf("cannot create sink writer: %w", err)
	}
	o.w = w
	return nil
}

func (o *sinkOp[T]) Collect(r T) {
	if err := o.w.Write(r); err != nil {
		o.fail(fmt.Errorf("sink %s cannot write: %w", o.name, err))
	}
}

func (o *sinkOp[T]) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	sw, ok := o.w.(SnapshottingWriter)
	if !ok {
		return runtime.OperatorSnapshot{}, nil
	}
	entries, err := sw.SnapshotState(id)
	if err != nil {
		return runtime.OperatorSnapshot{}, err
	}
	mode := checkpoint.SplitEvenly
	if r, ok := o.sink.(SinkStateRedistribution); ok {
		mode = r.StateRedistribution()
	}
	return runtime.OperatorSnapshot{List: []checkpoint.ListStateSnapshot{{Name: sinkStateName, Mode: mode, Entries: entries}}}, nil
}

func (o *sinkOp[T]) NotifyCheckpointComplete(id checkpoint.ID) error {
	if l, ok := o.w.(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *sinkOp[T]) NotifyCheckpointAborted(id checkpoint.ID) error {
	if l, ok := o.w.(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

func (o *sinkOp[T]) Finish() error {
	if f, ok := o.w.(Finisher); ok {
		return f.Finish()
	}
	return nil
}

func (o *sinkOp[T]) Close() error {
	if o.w == nil {
		return nil
	}
	return o.w.Close()
}

// DiscardSink drops every record (for benchmarks and jobs run for their
// side effects).
type DiscardSink[T any] struct{}

// CreateWriter implements Sink.
func (DiscardSink[T]) CreateWriter(SinkContext) (SinkWriter[T], error) {
	return discardWriter[T]{}, nil
}

type discardWriter[T any] struct{}

func (discardWriter[T]) Write(T) error { return nil }
func (discardWriter[T]) Close() error  { return nil }
