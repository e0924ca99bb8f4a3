package weir

import (
	"fmt"
	"strings"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// CheckpointedFunction is implemented by functions that keep operator state
// (Flink's CheckpointedFunction): state scoped to a parallel subtask rather
// than to a key, such as a buffer, a counter or the offsets a function
// tracks itself. It works with MapWith, FlatMapWith, FilterWith and the
// functions of ConnectBroadcast and ConnectBroadcastNonKeyed.
//
// The usual pattern keeps the working data in fields and moves it into
// list state in SnapshotState:
//
//	func (f *counting) InitializeState(ctx *weir.FunctionStateContext) (err error) {
//		if f.state, err = weir.GetOperatorListState[int64](ctx, "count"); err != nil {
//			return err
//		}
//		for _, n := range f.state.Get() { // restored: this subtask's share
//			f.count += n
//		}
//		return nil
//	}
//
//	func (f *counting) SnapshotState(checkpoint.ID) error {
//		f.state.Update([]int64{f.count})
//		return nil
//	}
//
// Both methods run on the subtask's goroutine: InitializeState once per
// subtask before the first record (also on a fresh start, when IsRestored
// is false), SnapshotState in the synchronous part of every checkpoint,
// after every record before the barrier and before any after it.
type CheckpointedFunction interface {
	// InitializeState registers the function's operator state and reads
	// what was restored into it.
	InitializeState(ctx *FunctionStateContext) error
	// SnapshotState is called when checkpoint id is taken: bring the
	// registered states up to date. An error fails the task.
	SnapshotState(id checkpoint.ID) error
}

// FunctionStateContext is what a CheckpointedFunction registers its
// operator state with; see GetOperatorListState and GetUnionListState.
type FunctionStateContext struct {
	op      *runtime.OperatorContext
	backend *state.OperatorBackend
	modes   map[string]checkpoint.Redistribution
}

// IsRestored tells whether the job restored from a checkpoint or savepoint
// (even if this operator had no state in it).
func (c *FunctionStateContext) IsRestored() bool { return c.op.Restored }

// RestoredCheckpoint is the checkpoint the job restored from (0 on a fresh
// start).
func (c *FunctionStateContext) RestoredCheckpoint() checkpoint.ID { return c.op.RestoredCheckpoint }

// Subtask is the index of the parallel subtask running the function.
func (c *FunctionStateContext) Subtask() int { return c.op.Subtask }

// Parallelism is the operator's parallelism.
func (c *FunctionStateContext) Parallelism() int { return c.op.Parallelism }

// reservedStatePrefix starts the names of operator list states weir keeps
// for itself in an operator (broadcast state); user states cannot use it.
const reservedStatePrefix = "weir/"

// GetOperatorListState returns the operator list state called name, with
// split-evenly redistribution: when the job restores at another
// parallelism, the entries of all old subtasks are concatenated and dealt
// out to the new subtasks in contiguous runs (at the same parallelism a
// subtask gets back exactly what it wrote). Every entry lands in exactly
// one subtask, so a list of independent items (buffered records, partial
// counts, partitions to read) survives any rescale with nothing lost or
// duplicated.
//
// Entries are encoded with state.CodecFor[T] and kept inline in the
// checkpoint metadata: keep them small.
func GetOperatorListState[T any](ctx *FunctionStateContext, name string) (ListState[T], error) {
	return getFunctionListState(ctx, name, checkpoint.SplitEvenly, state.CodecFor[T]())
}

// GetOperatorListStateWithCodec is GetOperatorListState with an explicit
// codec.
func GetOperatorListStateWithCodec[T any](ctx *FunctionStateContext, name string, codec state.Codec[T]) (ListState[T], error) {
	return getFunctionListState(ctx, name, checkpoint.SplitEvenly, codec)
}

// GetUnionListState returns the operator list state called name, with
// union redistribution: on every restore, at any parallelism, every subtask
// gets the entries of all old subtasks, and picks what it needs (a source
// picks the positions of the partitions it owns now). A subtask that keeps
// all of them, rather than replacing them with its own part, multiplies
// them by the parallelism at every restore.
func GetUnionListState[T any](ctx *FunctionStateContext, name string) (ListState[T], error) {
	return getFunctionListState(ctx, name, checkpoint.Union, state.CodecFor[T]())
}

// GetUnionListStateWithCodec is GetUnionListState with an explicit codec.
func GetUnionListStateWithCodec[T any](ctx *FunctionStateContext, name string, codec state.Codec[T]) (ListState[T], error) {
	return getFunctionListState(ctx, name, checkpoint.Union, codec)
}

func getFunctionListState[T any](ctx *FunctionStateContext, name string, mode checkpoint.Redistribution, codec state.Codec[T]) (ListState[T], error) {
	if ctx == nil || ctx.backend == nil {
		return nil, fmt.Errorf("operator list state %q: no function state context (call it from InitializeState)", name)
	}
	op := ctx.op.OperatorName
	if name == "" {
		return nil, fmt.Errorf("operator %s: operator list state needs a name", op)
	}
	if strings.HasPrefix(name, reservedStatePrefix) {
		return nil, fmt.Errorf("operator %s: operator list state %q: names starting with %q are reserved", op, name, reservedStatePrefix)
	}
	if prev, ok := ctx.modes[name]; ok && prev != mode {
		return nil, fmt.Errorf("operator %s: operator list state %q is already registered as %s state, not as %s state", op, name, modeName(prev), modeName(mode))
	}
	ls, err := state.GetListState(ctx.backend, name, mode, codec)
	if err != nil {
		return nil, fmt.Errorf("operator %s: %w", op, err)
	}
	ctx.modes[name] = mode
	return ls, nil
}

func modeName(m checkpoint.Redistribution) string {
	if m == checkpoint.Union {
		return "union list"
	}
	return "split-evenly list"
}

// functionState runs a function's operator state inside an operator: it
// calls InitializeState and SnapshotState and snapshots the registered
// lists.
type functionState struct {
	fn  CheckpointedFunction // nil: the function keeps no operator state
	ctx FunctionStateContext
}

// open restores restored (the operator's list states, less any weir keeps
// itself) and initializes fn if it is a CheckpointedFunction.
func (s *functionState) open(oc *runtime.OperatorContext, fn any, restored []checkpoint.ListStateSnapshot) error {
	s.ctx = FunctionStateContext{op: oc, backend: state.NewOperatorBackend(restored), modes: map[string]checkpoint.Redistribution{}}
	cf, ok := fn.(CheckpointedFunction)
	if !ok {
		return nil
	}
	s.fn = cf
	if err := cf.InitializeState(&s.ctx); err != nil {
		return fmt.Errorf("cannot initialize the state of %T: %w", fn, err)
	}
	return nil
}

// snapshot calls the function's SnapshotState and encodes every list.
// Restored states the function did not register are kept; a union one only
// in subtask 0, since every subtask restored all of its entries.
func (s *functionState) snapshot(id checkpoint.ID) ([]checkpoint.ListStateSnapshot, error) {
	if s.ctx.backend == nil {
		return nil, nil
	}
	if s.fn != nil {
		if err := s.fn.SnapshotState(id); err != nil {
			return nil, fmt.Errorf("function %T cannot snapshot its state: %w", s.fn, err)
		}
	}
	lists, err := s.ctx.backend.Snapshot()
	if err != nil {
		return nil, err
	}
	if s.ctx.op.Subtask != 0 {
		for i, l := range lists {
			if _, registered := s.ctx.modes[l.Name]; !registered && l.Mode == checkpoint.Union {
				lists[i].Entries = nil
			}
		}
	}
	return lists, nil
}

// MapFunction maps one record to one record; an error fails the task. A
// pointer to a struct may also implement CheckpointedFunction and
// CheckpointListener.
type MapFunction[T, U any] interface {
	Map(in T) (U, error)
}

// FlatMapFunction emits any number of records per record; an error fails
// the task. It may also implement CheckpointedFunction and
// CheckpointListener.
type FlatMapFunction[T, U any] interface {
	FlatMap(in T, out Collector[U]) error
}

// FilterFunction keeps the records for which Filter returns true; an error
// fails the task. It may also implement CheckpointedFunction and
// CheckpointListener.
type FilterFunction[T any] interface {
	Filter(in T) (bool, error)
}

// MapWith is Map with a function object, which may keep operator state by
// implementing CheckpointedFunction (Flink's RichMapFunction with
// CheckpointedFunction). Like Process, it gives every parallel subtask its
// own shallow copy of fn when fn is a pointer to a struct, so state handles
// kept in fields are per subtask.
func MapWith[T, U any](s Stream[T], fn MapFunction[T, U]) Stream[U] {
	n := addNode[U](s.env, "Map", []plan.Input{forwardInput(s)})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: MapWith needs a function, got nil", n.Name))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &richMapOp[T, U]{fn: perSubtask(fn), emits: emits[U]{out.(runtime.Collector[U])}}
		op.richOp.fn = op.fn
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{s.env, n}
}

// FlatMapWith is FlatMap with a function object; see MapWith.
func FlatMapWith[T, U any](s Stream[T], fn FlatMapFunction[T, U]) Stream[U] {
	n := addNode[U](s.env, "FlatMap", []plan.Input{forwardInput(s)})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: FlatMapWith needs a function, got nil", n.Name))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &richFlatMapOp[T, U]{fn: perSubtask(fn), emits: emits[U]{out.(runtime.Collector[U])}}
		op.richOp.fn = op.fn
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{s.env, n}
}

// FilterWith is Filter with a function object; see MapWith.
func FilterWith[T any](s Stream[T], fn FilterFunction[T]) Stream[T] {
	n := addNode[T](s.env, "Filter", []plan.Input{forwardInput(s)})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: FilterWith needs a function, got nil", n.Name))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &richFilterOp[T]{fn: perSubtask(fn), emits: emits[T]{out.(runtime.Collector[T])}}
		op.richOp.fn = op.fn
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{s.env, n}
}

// richOp is the lifecycle shared by the operators of function objects:
// operator state, checkpoint notifications, failing the task.
type richOp struct {
	fn   any
	name string
	st   functionState
	fail func(error)
}

func (o *richOp) Open(oc *runtime.OperatorContext) error {
	o.name = oc.OperatorName
	o.fail = oc.Fail
	return o.st.open(oc, o.fn, oc.RestoredList)
}

func (o *richOp) failed(err error) {
	o.fail(fmt.Errorf("operator %s: %w", o.name, err))
}

func (o *richOp) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	lists, err := o.st.snapshot(id)
	return runtime.OperatorSnapshot{List: lists}, err
}

func (o *richOp) NotifyCheckpointComplete(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *richOp) NotifyCheckpointAborted(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

func (o *richOp) Finish() error { return nil }
func (o *richOp) Close() error  { return nil }

type richMapOp[T, U any] struct {
	richOp
	emits[U]
	fn MapFunction[T, U]
}

func (o *richMapOp[T, U]) Collect(r T) {
	u, err := o.fn.Map(r)
	if err != nil {
		o.failed(err)
		return
	}
	o.out.Collect(u)
}

type richFlatMapOp[T, U any] struct {
	richOp
	emits[U]
	fn FlatMapFunction[T, U]
}

func (o *richFlatMapOp[T, U]) Collect(r T) {
	if err := o.fn.FlatMap(r, o.out); err != nil {
		o.failed(err)
	}
}

type richFilterOp[T any] struct {
	richOp
	emits[T]
	fn FilterFunction[T]
}

func (o *richFilterOp[T]) Collect(r T) {
	keep, err := o.fn.Filter(r)
	if err != nil {
		o.failed(err)
		return
	}
	if keep {
		o.out.Collect(r)
	}
}
