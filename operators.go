package weir

import (
	"fmt"
	"io"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/runtime"
)

// baseOp is an operator without state or lifecycle work.
type baseOp struct{}

func (*baseOp) Open(*runtime.OperatorContext) error { return nil }
func (*baseOp) SnapshotState(checkpoint.ID) (runtime.OperatorSnapshot, error) {
	return runtime.OperatorSnapshot{}, nil
}
func (*baseOp) NotifyCheckpointComplete(checkpoint.ID) error { return nil }
func (*baseOp) NotifyCheckpointAborted(checkpoint.ID) error  { return nil }
func (*baseOp) Finish() error                                { return nil }
func (*baseOp) Close() error                                 { return nil }

// emits is an operator's output: records go to out, and watermarks and
// the input status pass through to it, in order with the records.
type emits[U any] struct{ out runtime.Collector[U] }

func (e *emits[U]) ProcessWatermark(wm int64) { runtime.ForwardWatermark(e.out, wm) }
func (e *emits[U]) ProcessStatus(idle bool)   { runtime.ForwardStatus(e.out, idle) }

type mapOp[T, U any] struct {
	baseOp
	emits[U]
	f func(T) U
}

func (o *mapOp[T, U]) Collect(r T) { o.out.Collect(o.f(r)) }

type mapErrOp[T, U any] struct {
	baseOp
	emits[U]
	f    func(T) (U, error)
	fail func(error)
}

func (o *mapErrOp[T, U]) Open(ctx *runtime.OperatorContext) error {
	o.fail = ctx.Fail
	return nil
}

func (o *mapErrOp[T, U]) Collect(r T) {
	u, err := o.f(r)
	if err != nil {
		o.fail(err)
		return
	}
	o.out.Collect(u)
}

type flatMapOp[T, U any] struct {
	baseOp
	emits[U]
	f func(T, Collector[U])
}

func (o *flatMapOp[T, U]) Collect(r T) { o.f(r, o.out) }

type filterOp[T any] struct {
	baseOp
	emits[T]
	keep func(T) bool
}

func (o *filterOp[T]) Collect(r T) {
	if o.keep(r) {
		o.out.Collect(r)
	}
}

type printOp[T any] struct {
	baseOp
	w       io.Writer
	subtask int
	prefix  bool
	buf     []byte
	fail    func(error)
}

func (o *printOp[T]) Open(ctx *runtime.OperatorContext) error {
	o.prefix = ctx.Parallelism > 1
	o.fail = ctx.Fail
	return nil
}

func (o *printOp[T]) Collect(r T) {
	o.buf = o.buf[:0]
	if o.prefix {
		o.buf = fmt.Appendf(o.buf, "%d> ", o.subtask+1)
	}
	o.buf = fmt.Appendf(o.buf, "%v\n", r)
	if _, err := o.w.Write(o.buf); err != nil {
		o.fail(fmt.Errorf("cannot print: %w", err))
	}
}
