package weir

import (
	"fmt"

	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
)

// OutputTag names a side output of type T: a second stream a keyed process
// function or a window emits into (Flink's OutputTag). Create one per side
// output, and use the same tag in the function (Output) and in the program
// (GetSideOutput).
type OutputTag[T any] struct{ id string }

// NewOutputTag returns the tag called id; id must not be empty.
func NewOutputTag[T any](id string) OutputTag[T] { return OutputTag[T]{id: id} }

// ID is the tag's name.
func (t OutputTag[T]) ID() string { return t.id }

// Output emits v to the side output tag of the operator running ctx's
// function, with the timestamp of the record (or timer) being processed.
// Nothing is emitted when no stream reads the side output.
func Output[T any, K comparable](ctx *KeyedContext[K], tag OutputTag[T], v T) {
	emitSide(ctx.sides, ctx.op, tag, v)
}

func emitSide[T any](sides map[string]any, op *runtime.OperatorContext, tag OutputTag[T], v T) {
	s, ok := sides[tag.id]
	if !ok {
		return
	}
	c, ok := s.(runtime.Collector[T])
	if !ok {
		op.Fail(fmt.Errorf("operator %s: side output %q is read as %T, emitted as %T", op.OperatorName, tag.id, s, v))
		return
	}
	c.Collect(v)
}

// GetSideOutput is the stream of the side output tag of s's operator (a
// keyed process function or a window). The stream runs in the same task as
// s's operator (chained), with s's parallelism.
func GetSideOutput[T, X any](s Stream[X], tag OutputTag[T]) Stream[T] {
	if tag.id == "" {
		s.env.setErr(fmt.Errorf("operator %s: a side output tag needs a name", s.n.Name))
	}
	if s.n.NewOperatorWithSides == nil {
		s.env.setErr(fmt.Errorf("operator %s (%s) has no side outputs: only keyed process functions and windows do", s.n.Name, s.n.Kind))
	}
	n := addNode[T](s.env, "SideOutput", []plan.Input{{From: s.n, Partitioning: runtime.Forward, SideTag: tag.id, Type: edgeTypeOf[T](nil)}})
	n.Name = s.n.Name + "-" + tag.id
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &identityOp[T]{emits: emits[T]{out: out.(runtime.Collector[T])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	n.ParallelismOf = s.n
	return Stream[T]{s.env, n}
}

// identityOp passes records and watermarks on unchanged.
type identityOp[T any] struct {
	baseOp
	emits[T]
}

func (o *identityOp[T]) Collect(r T) { o.out.Collect(r) }
