package weir

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/watermark"
)

// ReadStatus is what SourceReader.Read reports.
type ReadStatus = runtime.ReadStatus

const (
	// MoreAvailable: records may be read again right away.
	MoreAvailable = runtime.MoreAvailable
	// NothingAvailable: wait for Available before reading again.
	NothingAvailable = runtime.NothingAvailable
	// EndOfInput: the reader has no more records, ever.
	EndOfInput = runtime.EndOfInput
)

// Source is a replayable, partitioned source of records. It creates one
// SourceReader per parallel subtask.
type Source[T any] interface {
	CreateReader(ctx SourceContext) (SourceReader[T], error)
}

// SourceContext tells a reader who it is and where to resume.
type SourceContext struct {
	Subtask     int
	Parallelism int
	// Restored holds the positions every reader of the restored checkpoint
	// returned from Snapshot, from all subtasks (union redistribution): a
	// reader picks the entries of the partitions it owns now, so a job can
	// restore at another parallelism. Nil on a fresh start.
	Restored [][]byte
	// RestoredCheckpoint is the checkpoint restored (0 on a fresh start).
	RestoredCheckpoint checkpoint.ID
	Logger             *slog.Logger
}

// SourceReader reads the partitions one subtask owns. All methods run on
// the subtask's goroutine; Read is called between checkpoints, so the
// position Snapshot reports is always between two records.
type SourceReader[T any] interface {
	// Read appends the records available now to buf (at most cap(buf)
	// records in all) and returns it. It must not block for long: with
	// nothing to read it returns NothingAvailable, and the task waits for
	// Available (or a checkpoint trigger).
	Read(buf []T) ([]T, ReadStatus, error)
	// Available is signalled (or closed) when Read may have records again.
	Available() <-chan struct{}
	// Snapshot returns the reader's position: where to resume so that the
	// next record read is the first one after those already returned.
	Snapshot(id checkpoint.ID) ([][]byte, error)
	Close() error
}

const sourceStateName = "source-positions"

// NonParallel is implemented by sources that must run as a single
// subtask (one socket, one text file): FromSource gives them parallelism 1,
// and SetParallelism refuses anything else.
type NonParallel interface{ NonParallel() }

// FromSource adds a source to the job.
func FromSource[T any](env *Environment, src Source[T], name string) Stream[T] {
	n := addNode[T](env, "Source: "+name, nil)
	n.IsSource = true
	if _, ok := src.(NonParallel); ok {
		n.FixedParallelism = true
		n.Parallelism = 1
	}
	bufSize := env.cfg.rc.BufferSize
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &sourceOp[T]{src: src, out: out.(runtime.Collector[T]), buf: make([]T, 0, bufSize), interval: env.cfg.watermarkInterval}
		return nil, op, op, nil
	}
	return Stream[T]{env, n}
}

type sourceOp[T any] struct {
	src    Source[T]
	reader SourceReader[T]
	out    runtime.Collector[T]
	buf    []T
	// Event time (FromSourceWithWatermarks): the strategy, the task's
	// record timestamp slot, the splits' watermarks, the splits of the
	// records read.
	ws       *WatermarkStrategy[T]
	ts       *int64
	wms      *splitWatermarks[T]
	interval time.Duration
	splits   []int
	// restoredWM is the watermark every source subtask of the restored
	// checkpoint had emitted before its barrier (the minimum over them):
	// emitted again before the first record read after the restore, so
	// that downstream operators judge lateness as they did before.
	restoredWM    int64
	hasRestoredWM bool
}

func (o *sourceOp[T]) Open(ctx *runtime.OperatorContext) error {
	sc := SourceContext{Subtask: ctx.Subtask, Parallelism: ctx.Parallelism, Logger: ctx.Logger}
	if ctx.Restored {
		sc.RestoredCheckpoint = ctx.RestoredCheckpoint
		for _, l := range ctx.RestoredList {
			switch l.Name {
			case sourceStateName:
				sc.Restored = append(sc.Restored, l.Entries...)
			case sourceWatermarkName:
				o.restoreWatermark(l.Entries)
			}
		}
	}
	r, err := o.src.CreateReader(sc)
	if err != nil {
		return fmt.Errorf("cannot create source reader: %w", err)
	}
	o.reader = r
	o.openWatermarks(ctx)
	return nil
}

func (o *sourceOp[T]) Read() (runtime.ReadStatus, error) {
	if o.wms != nil {
		return o.readStamped()
	}
	buf, st, err := o.reader.Read(o.buf[:0])
	for _, r := range buf {
		o.out.Collect(r)
	}
	clear(buf)
	return st, err
}

// readStamped reads with event time: every record gets its timestamp and
// feeds its split's watermark generator; the end of the input emits
// MaxWatermark.
func (o *sourceOp[T]) readStamped() (runtime.ReadStatus, error) {
	if o.hasRestoredWM {
		o.hasRestoredWM = false
		o.wms.apply(watermark.Output{Watermark: o.restoredWM, HasWatermark: true})
	}
	sr, ok := o.reader.(SplitReader[T])
	if !ok {
		buf, st, err := o.reader.Read(o.buf[:0])
		if len(buf) > 0 {
			o.wms.emitRun(buf, 0, o.ts, o.out)
		}
		return o.endStamped(buf, st, err)
	}
	buf, splits, st, err := sr.ReadSplits(o.buf[:0], o.splits[:0])
	o.splits = splits
	if len(splits) != len(buf) {
		if err == nil {
			err = fmt.Errorf("source reader returned %d records and %d splits", len(buf), len(splits))
		}
		return o.endStamped(buf, st, err)
	}
	// Records come in runs of one split.
	for i := 0; i < len(splits); {
		j := i + 1
		for j < len(splits) && splits[j] == splits[i] {
			j++
		}
		o.wms.emitRun(buf[i:j], splits[i], o.ts, o.out)
		i = j
	}
	return o.endStamped(buf, st, err)
}

func (o *sourceOp[T]) endStamped(buf []T, st ReadStatus, err error) (runtime.ReadStatus, error) {
	clear(buf)
	if st == EndOfInput && err == nil {
		o.wms.end()
	}
	return st, err
}

func (o *sourceOp[T]) Available() <-chan struct{} { return o.reader.Available() }

func (o *sourceOp[T]) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	entries, err := o.reader.Snapshot(id)
	if err != nil {
		return runtime.OperatorSnapshot{}, err
	}
	snap := runtime.OperatorSnapshot{List: []checkpoint.ListStateSnapshot{{Name: sourceStateName, Mode: checkpoint.Union, Entries: entries}}}
	if o.wms != nil {
		wm := o.wms.lastSent
		if o.hasRestoredWM { // nothing read since the restore
			wm = max(wm, o.restoredWM)
		}
		snap.List = append(snap.List, checkpoint.ListStateSnapshot{Name: sourceWatermarkName, Mode: checkpoint.Union,
			Entries: [][]byte{binary.BigEndian.AppendUint64(nil, uint64(wm))}})
	}
	return snap, nil
}

// sourceWatermarkName is the operator list state of an event-time
// source's last emitted watermark: one entry per subtask, 8 bytes big
// endian.
const sourceWatermarkName = "source-watermark"

// restoreWatermark takes the minimum of the old subtasks' watermarks. A
// malformed entry restores none (the watermark then starts over, as
// without this state).
func (o *sourceOp[T]) restoreWatermark(entries [][]byte) {
	wm := int64(math.MaxInt64)
	for _, e := range entries {
		if len(e) != 8 {
			return
		}
		wm = min(wm, int64(binary.BigEndian.Uint64(e)))
	}
	if len(entries) > 0 && wm > MinWatermark {
		o.restoredWM, o.hasRestoredWM = wm, true
	}
}

func (o *sourceOp[T]) NotifyCheckpointComplete(id checkpoint.ID) error {
	if l, ok := o.reader.(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *sourceOp[T]) NotifyCheckpointAborted(id checkpoint.ID) error {
	if l, ok := o.reader.(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

func (o *sourceOp[T]) Finish() error { return nil }

func (o *sourceOp[T]) Close() error {
	if o.reader == nil {
		return nil
	}
	return o.reader.Close()
}
