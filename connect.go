package weir

import (
	"fmt"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// Two-input operators (Flink's ConnectedStreams). Both inputs are tagged
// into one internal record type (the one ConnectBroadcast uses: a side tag
// and the record, encoded for the network with each side's codec) and read
// by one operator through one input gate. So barrier alignment spans both
// inputs, the operator's watermark is the minimum over the channels of
// both, and the end of one input only means that no more records come from
// that side: the operator ends when both have ended.

// ConnectedStreams are two streams, possibly of different types, read by
// one operator: CoMap, CoFlatMap or CoProcess.
type ConnectedStreams[A, B any] struct {
	a Stream[A]
	b Stream[B]
}

// Connect connects a and b: the operator built on the result reads the
// records of both, each with its own function.
func Connect[A, B any](a Stream[A], b Stream[B]) ConnectedStreams[A, B] {
	return ConnectedStreams[A, B]{a: a, b: b}
}

// CoContext is what a non-keyed co-process function sees.
type CoContext struct {
	op *runtime.OperatorContext
	wm *int64
}

// Timestamp is the event timestamp of the record being processed; ok is
// false when it has none.
func (c *CoContext) Timestamp() (ts int64, ok bool) {
	if c.op.Timestamp == nil || *c.op.Timestamp == NoTimestamp {
		return NoTimestamp, false
	}
	return *c.op.Timestamp, true
}

// CurrentWatermark is the operator's watermark: the minimum over both
// inputs (MinWatermark before the first).
func (c *CoContext) CurrentWatermark() int64 { return *c.wm }

// Subtask is the index of the parallel subtask running the function.
func (c *CoContext) Subtask() int { return c.op.Subtask }

// Parallelism is the operator's parallelism.
func (c *CoContext) Parallelism() int { return c.op.Parallelism }

// CoProcessFunction processes the records of two connected streams
// (Flink's CoProcessFunction): ProcessElement1 those of the first,
// ProcessElement2 those of the second, never concurrently. An error fails
// the task. It may also implement CoOpener and CheckpointListener.
type CoProcessFunction[A, B, OUT any] interface {
	ProcessElement1(ctx *CoContext, in A, out Collector[OUT]) error
	ProcessElement2(ctx *CoContext, in B, out Collector[OUT]) error
}

// CoOpener is implemented by co-process functions that need setup per
// subtask, before the first record.
type CoOpener interface {
	Open(ctx *CoContext) error
}

// CoMap maps the records of the first stream with f1 and those of the
// second with f2 into one stream.
func CoMap[A, B, OUT any](cs ConnectedStreams[A, B], f1 func(A) OUT, f2 func(B) OUT) Stream[OUT] {
	s := coNode(cs, "CoMap", func() CoProcessFunction[A, B, OUT] { return coMapFn[A, B, OUT]{f1, f2} })
	if f1 == nil || f2 == nil {
		s.env.setErr(fmt.Errorf("operator %s: CoMap needs two functions", s.n.Name))
	}
	return s
}

// CoFlatMap calls f1 for every record of the first stream and f2 for every
// record of the second; each emits any number of records.
func CoFlatMap[A, B, OUT any](cs ConnectedStreams[A, B], f1 func(A, Collector[OUT]), f2 func(B, Collector[OUT])) Stream[OUT] {
	s := coNode(cs, "CoFlatMap", func() CoProcessFunction[A, B, OUT] { return coFlatMapFn[A, B, OUT]{f1, f2} })
	if f1 == nil || f2 == nil {
		s.env.setErr(fmt.Errorf("operator %s: CoFlatMap needs two functions", s.n.Name))
	}
	return s
}

// CoProcess applies fn to the records of both streams. Like Process, each
// subtask gets its own shallow copy of fn when fn is a pointer to a
// struct.
func CoProcess[A, B, OUT any](cs ConnectedStreams[A, B], fn CoProcessFunction[A, B, OUT]) Stream[OUT] {
	s := coNode(cs, "CoProcess", func() CoProcessFunction[A, B, OUT] { return perSubtask(fn) })
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: CoProcess needs a function, got nil", s.n.Name))
	}
	return s
}

type coMapFn[A, B, OUT any] struct {
	f1 func(A) OUT
	f2 func(B) OUT
}

func (f coMapFn[A, B, OUT]) ProcessElement1(_ *CoContext, in A, out Collector[OUT]) error {
	out.Collect(f.f1(in))
	return nil
}

func (f coMapFn[A, B, OUT]) ProcessElement2(_ *CoContext, in B, out Collector[OUT]) error {
	out.Collect(f.f2(in))
	return nil
}

type coFlatMapFn[A, B, OUT any] struct {
	f1 func(A, Collector[OUT])
	f2 func(B, Collector[OUT])
}

func (f coFlatMapFn[A, B, OUT]) ProcessElement1(_ *CoContext, in A, out Collector[OUT]) error {
	f.f1(in, out)
	return nil
}

func (f coFlatMapFn[A, B, OUT]) ProcessElement2(_ *CoContext, in B, out Collector[OUT]) error {
	f.f2(in, out)
	return nil
}

// coNode adds the two-input operator reading cs: each side is tagged in
// its own task (chained to it), and both reach the operator as any input
// does (forward at equal parallelism, round robin otherwise).
func coNode[A, B, OUT any](cs ConnectedStreams[A, B], kind string, newFn func() CoProcessFunction[A, B, OUT]) Stream[OUT] {
	env := cs.a.env
	first := tagInput[A, connected[A, B]](cs.a, kind+" first input", func(r A) connected[A, B] { return connected[A, B]{in: r} })
	second := tagInput[B, connected[A, B]](cs.b, kind+" second input", func(r B) connected[A, B] { return connected[A, B]{fromBroadcast: true, b: r} })
	n := addNode[OUT](env, kind, []plan.Input{
		{From: first, Partitioning: runtime.Forward, Auto: true, Type: connectedType[A, B](nil)},
		{From: second, Partitioning: runtime.Forward, Auto: true, Type: connectedType[A, B](nil)},
	})
	if cs.b.env != env {
		env.setErr(fmt.Errorf("operator %s: %s of streams from different environments", n.Name, kind))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &coOp[A, B, OUT]{fn: newFn(), emits: emits[OUT]{out.(runtime.Collector[OUT])}}
		return runtime.Collector[connected[A, B]](op), op, nil, nil
	}
	return Stream[OUT]{env, n}
}

// coOp runs a CoProcessFunction.
type coOp[A, B, OUT any] struct {
	baseOp
	emits[OUT]
	fn   CoProcessFunction[A, B, OUT]
	ctx  CoContext
	wm   int64
	fail func(error)
}

func (o *coOp[A, B, OUT]) Open(oc *runtime.OperatorContext) error {
	o.fail = oc.Fail
	o.wm = MinWatermark
	o.ctx = CoContext{op: oc, wm: &o.wm}
	if op, ok := o.fn.(CoOpener); ok {
		return op.Open(&o.ctx)
	}
	return nil
}

func (o *coOp[A, B, OUT]) Collect(r connected[A, B]) {
	var err error
	if r.fromBroadcast {
		err = o.fn.ProcessElement2(&o.ctx, r.b, o.out)
	} else {
		err = o.fn.ProcessElement1(&o.ctx, r.in, o.out)
	}
	if err != nil {
		o.fail(err)
	}
}

// ProcessWatermark implements runtime.WatermarkStage.
func (o *coOp[A, B, OUT]) ProcessWatermark(wm int64) {
	if wm > o.wm {
		o.wm = wm
	}
	o.emits.ProcessWatermark(wm)
}

func (o *coOp[A, B, OUT]) NotifyCheckpointComplete(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *coOp[A, B, OUT]) NotifyCheckpointAborted(id checkpoint.ID) error {
	if l, ok := o.fn.(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

// KeyedConnectedStreams are two keyed streams with the same key type read
// by one keyed operator: records of either side with equal keys reach the
// same subtask and share its keyed state and timers.
type KeyedConnectedStreams[K comparable, A, B any] struct {
	a KeyedStream[K, A]
	b KeyedStream[K, B]
}

// ConnectKeyed connects two keyed streams (Flink's
// connect(...).keyBy(...)). Both sides are partitioned with the key codec
// of ka, so a key of kb reaches the subtask owning the equal key of ka.
func ConnectKeyed[K comparable, A, B any](ka KeyedStream[K, A], kb KeyedStream[K, B]) KeyedConnectedStreams[K, A, B] {
	return KeyedConnectedStreams[K, A, B]{a: ka, b: kb}
}

// KeyedCoProcessFunction processes the records of two connected keyed
// streams (Flink's KeyedCoProcessFunction), each with its key's state:
// ProcessElement1 those of the first stream, ProcessElement2 those of the
// second, never concurrently. Both see the same keyed state of the key.
//
// Implementations may also implement KeyedOpener (setup per subtask: get
// state handles), KeyedTimerFunction (timers, registered with ctx),
// KeyedFinisher (at the end of both inputs) and CheckpointListener.
type KeyedCoProcessFunction[K comparable, A, B, OUT any] interface {
	ProcessElement1(ctx *KeyedContext[K], in A, out Collector[OUT]) error
	ProcessElement2(ctx *KeyedContext[K], in B, out Collector[OUT]) error
}

// KeyedCoProcess applies fn to the records of both keyed streams. Like
// Process, each subtask gets its own shallow copy of fn when fn is a
// pointer to a struct. Set a UID on the result: its keyed state is found
// under it.
func KeyedCoProcess[K comparable, A, B, OUT any](kcs KeyedConnectedStreams[K, A, B], fn KeyedCoProcessFunction[K, A, B, OUT]) Stream[OUT] {
	s := keyedCoNode(kcs, "KeyedCoProcess", func(out runtime.Collector[OUT]) keyedLogic[K, connected[A, B]] {
		return &coProcessLogic[K, A, B, OUT]{fn: perSubtask(fn), out: out}
	})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: KeyedCoProcess needs a function, got nil", s.n.Name))
	}
	return s
}

// keyedCoNode adds a keyed operator reading both sides of kcs, each
// through a hash edge on its own key, with the logic newLogic builds.
func keyedCoNode[K comparable, A, B, OUT any](kcs KeyedConnectedStreams[K, A, B], kind string, newLogic func(out runtime.Collector[OUT]) keyedLogic[K, connected[A, B]]) Stream[OUT] {
	env := kcs.a.s.env
	keyA, keyB, codec := kcs.a.key, kcs.b.key, kcs.a.codec
	first := tagInput[A, connected[A, B]](kcs.a.s, kind+" first input", func(r A) connected[A, B] { return connected[A, B]{in: r} })
	second := tagInput[B, connected[A, B]](kcs.b.s, kind+" second input", func(r B) connected[A, B] { return connected[A, B]{fromBroadcast: true, b: r} })
	key := func(r connected[A, B]) K {
		if r.fromBroadcast {
			return keyB(r.b)
		}
		return keyA(r.in)
	}
	newHash := func() func(connected[A, B]) uint32 {
		h := state.HasherFor(codec)
		return func(r connected[A, B]) uint32 { return h(key(r)) }
	}
	n := addNode[OUT](env, kind, []plan.Input{
		{From: first, Partitioning: runtime.Hash, Type: connectedType[A, B](newHash)},
		{From: second, Partitioning: runtime.Hash, Type: connectedType[A, B](newHash)},
	})
	if kcs.b.s.env != env {
		env.setErr(fmt.Errorf("operator %s: %s of streams from different environments", n.Name, kind))
	}
	if kcs.b.codec != nil && codec != nil {
		ia, va := state.CodecIdentity(codec)
		ib, vb := state.CodecIdentity(kcs.b.codec)
		if ia != ib || va != vb {
			env.setErr(fmt.Errorf("operator %s: the two keyed streams have different key codecs (%s v%d, %s v%d): equal keys would not meet", n.Name, ia, va, ib, vb))
		}
	}
	backend := env.cfg.stateBackend
	n.NewOperatorWithSides = func(_ int, out any, sides map[string]any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &keyedOp[K, connected[A, B]]{key: key, codec: codec, backend: backend, logic: newLogic(out.(runtime.Collector[OUT])), out: out, sides: sides}
		return runtime.Collector[connected[A, B]](op), op, nil, nil
	}
	return Stream[OUT]{env, n}
}

// coProcessLogic runs a KeyedCoProcessFunction as keyed logic.
type coProcessLogic[K comparable, A, B, OUT any] struct {
	fn  KeyedCoProcessFunction[K, A, B, OUT]
	out runtime.Collector[OUT]
}

func (l *coProcessLogic[K, A, B, OUT]) open(ctx *KeyedContext[K]) error {
	if o, ok := l.fn.(KeyedOpener[K]); ok {
		return o.Open(ctx)
	}
	return nil
}

func (l *coProcessLogic[K, A, B, OUT]) process(ctx *KeyedContext[K], r connected[A, B]) error {
	if r.fromBroadcast {
		return l.fn.ProcessElement2(ctx, r.b, l.out)
	}
	return l.fn.ProcessElement1(ctx, r.in, l.out)
}

func (l *coProcessLogic[K, A, B, OUT]) operator() any { return l.fn }

func (l *coProcessLogic[K, A, B, OUT]) usesTimers() bool {
	_, ok := l.fn.(KeyedTimerFunction[K, OUT])
	return ok
}

func (l *coProcessLogic[K, A, B, OUT]) onTimer(ctx *KeyedContext[K], t state.Timer[K]) error {
	return l.fn.(KeyedTimerFunction[K, OUT]).OnTimer(ctx, t.Timestamp, l.out)
}

func (l *coProcessLogic[K, A, B, OUT]) endOfData(ctx *KeyedContext[K]) error {
	if f, ok := l.fn.(KeyedFinisher[K, OUT]); ok {
		return f.Finish(ctx, l.out)
	}
	return nil
}
