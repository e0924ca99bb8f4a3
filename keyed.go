package weir

import (
	"fmt"
	"reflect"
	"time"

	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// ValueState is a single value per key; see GetValueState.
type ValueState[V any] = state.ValueState[V]

// KeyedContext is what a keyed function sees: the key of the record being
// processed and the keyed state scoped to it.
type KeyedContext[K comparable] struct {
	backend state.KeyedBackend[K]
	op      *runtime.OperatorContext
	wm      *int64
	// timers is the operator's timer service (nil when its function has
	// no OnTimer); domain is the time domain of the timer being fired (0
	// while processing a record).
	timers *keyedTimers[K]
	domain TimeDomain
	// sides are the collectors of the side outputs read downstream, by tag.
	sides map[string]any
}

// Timestamp is the event timestamp of the record being processed; ok is
// false when it has none (a job without event time, a source without a
// timestamp assigner).
func (c *KeyedContext[K]) Timestamp() (ts int64, ok bool) {
	if c.op.Timestamp == nil || *c.op.Timestamp == NoTimestamp {
		return NoTimestamp, false
	}
	return *c.op.Timestamp, true
}

// CurrentWatermark is the operator's event-time watermark (MinWatermark
// before the first).
func (c *KeyedContext[K]) CurrentWatermark() int64 { return *c.wm }

// CurrentKey is the key of the record being processed.
func (c *KeyedContext[K]) CurrentKey() K { return c.backend.CurrentKey() }

// Subtask is the index of the parallel subtask running the function.
func (c *KeyedContext[K]) Subtask() int { return c.op.Subtask }

// Parallelism is the operator's parallelism.
func (c *KeyedContext[K]) Parallelism() int { return c.op.Parallelism }

// GetValueState returns the value state called name, scoped to the current
// key at every access. Call it in Open (or once, and keep the result).
// Values are written into checkpoints with state.CodecFor[V] (built-in for
// numbers, strings and bytes; JSON for other types).
func GetValueState[V any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) (ValueState[V], error) {
	s, err := state.GetValueState[K, V](ctx.backend, name, state.CodecFor[V](), opts...)
	return s, ctx.registerError(err)
}

// registerError names the operator, and the checkpoint it restored, in an
// error registering a keyed state (a state whose checkpointed schema the
// job cannot read, see state.SchemaError).
func (c *KeyedContext[K]) registerError(err error) error {
	if err == nil {
		return nil
	}
	if c.op.Restored {
		return fmt.Errorf("cannot register keyed state of operator %s (uid %q) restored from checkpoint %d: %w", c.op.OperatorName, c.op.OperatorUID, c.op.RestoredCheckpoint, err)
	}
	return fmt.Errorf("cannot register keyed state of operator %s (uid %q): %w", c.op.OperatorName, c.op.OperatorUID, err)
}

// StateOption configures a keyed state when it is registered (WithTTL).
type StateOption = state.Option

// TTLConfig is a state time-to-live (Flink's StateTtlConfig); see
// state.TTLConfig.
type TTLConfig = state.TTLConfig

// Which accesses renew a time-to-live.
const (
	OnCreateAndWrite = state.OnCreateAndWrite
	OnReadAndWrite   = state.OnReadAndWrite
)

// WithTTL expires a key's state ttl after it was last written: reads never
// return an expired value, and expired entries are cleaned up on access,
// incrementally and in full snapshots. For list, map, reducing and
// aggregating state the whole value of a key expires together.
func WithTTL(ttl time.Duration) StateOption { return state.WithTTL(state.TTLConfig{TTL: ttl}) }

// WithTTLConfig is WithTTL with every setting.
func WithTTLConfig(c TTLConfig) StateOption { return state.WithTTL(c) }

// GetValueStateWithCodec is GetValueState with an explicit value codec.
// The codec's identity and version (state.CodecIdentity) are recorded in
// checkpoints; a codec that reads what an earlier codec wrote
// (state.MigratingCodec) migrates the state on restore.
func GetValueStateWithCodec[V any, K comparable](ctx *KeyedContext[K], name string, codec state.Codec[V], opts ...StateOption) (ValueState[V], error) {
	s, err := state.GetValueState[K, V](ctx.backend, name, codec, opts...)
	return s, ctx.registerError(err)
}

// ListState is a list per key (keyed) or per subtask (operator state).
type ListState[T any] = state.ListState[T]

// ReducingState keeps the reduction of the values added per key.
type ReducingState[T any] = state.ReducingState[T]

// AggregatingState keeps an accumulator of the values added per key.
type AggregatingState[IN, OUT any] = state.AggregatingState[IN, OUT]

// Aggregator folds values into an accumulator; see AggregatingState.
type Aggregator[IN, ACC, OUT any] = state.Aggregator[IN, ACC, OUT]

// GetListState returns the keyed list state called name. Elements are
// stored one by one: Add does not read the list, All iterates without
// materialising it; Get returns a list the caller must not modify. (With a
// TTL the list is stored, and expires, as one value.)
func GetListState[V any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) (ListState[V], error) {
	s, err := state.GetKeyedListState[K, V](ctx.backend, name, state.CodecFor[V](), opts...)
	return s, ctx.registerError(err)
}

// GetListStateWithCodec is GetListState with an explicit element codec.
func GetListStateWithCodec[V any, K comparable](ctx *KeyedContext[K], name string, codec state.Codec[V], opts ...StateOption) (ListState[V], error) {
	s, err := state.GetKeyedListState[K, V](ctx.backend, name, codec, opts...)
	return s, ctx.registerError(err)
}

// MapState is a map per key.
type MapState[UK comparable, UV any] = state.MapState[UK, UV]

// GetMapState returns the keyed map state called name. Entries are stored
// one by one: Put, Get and Remove cost the same however large the key's
// map grows, and All, Keys and Values iterate without materialising it.
// (With a TTL the map is stored, and expires, as one value.)
func GetMapState[UK comparable, UV any, K comparable](ctx *KeyedContext[K], name string, opts ...StateOption) (MapState[UK, UV], error) {
	s, err := state.GetMapState[K, UK, UV](ctx.backend, name, state.CodecFor[UK](), state.CodecFor[UV](), opts...)
	return s, ctx.registerError(err)
}

// GetReducingState returns the keyed reducing state called name.
func GetReducingState[V any, K comparable](ctx *KeyedContext[K], name string, reduce func(a, b V) V, opts ...StateOption) (ReducingState[V], error) {
	s, err := state.GetReducingState[K, V](ctx.backend, name, state.CodecFor[V](), reduce, opts...)
	return s, ctx.registerError(err)
}

// GetAggregatingState returns the keyed aggregating state called name.
func GetAggregatingState[IN, ACC, OUT any, K comparable](ctx *KeyedContext[K], name string, agg Aggregator[IN, ACC, OUT], opts ...StateOption) (AggregatingState[IN, OUT], error) {
	s, err := state.GetAggregatingState[K, IN, ACC, OUT](ctx.backend, name, state.CodecFor[ACC](), agg, opts...)
	return s, ctx.registerError(err)
}

// KeyedProcessFunction processes the records of a keyed stream one at a
// time, with keyed state. Implementations may also implement
// Open(*KeyedContext[K]) error, called once per subtask before the first
// record (the place to get state handles), and CheckpointListener.
type KeyedProcessFunction[K comparable, IN, OUT any] interface {
	ProcessElement(ctx *KeyedContext[K], in IN, out Collector[OUT]) error
}

// KeyedOpener is implemented by functions that need setup per subtask.
type KeyedOpener[K comparable] interface {
	Open(ctx *KeyedContext[K]) error
}

// ProcessFunc adapts a function to KeyedProcessFunction.
type ProcessFunc[K comparable, IN, OUT any] func(ctx *KeyedContext[K], in IN, out Collector[OUT]) error

// ProcessElement implements KeyedProcessFunction.
func (f ProcessFunc[K, IN, OUT]) ProcessElement(ctx *KeyedContext[K], in IN, out Collector[OUT]) error {
	return f(ctx, in, out)
}

// Process applies fn to every record of a keyed stream.
//
// Like Flink, which gives every parallel subtask its own deserialized copy
// of a function, weir gives each subtask its own copy of fn when fn is a
// pointer to a struct: a shallow copy, so fields set in Open (state
// handles) are per subtask, while pointers, maps and channels the fields
// hold are shared.
func Process[K comparable, IN, OUT any](ks KeyedStream[K, IN], fn KeyedProcessFunction[K, IN, OUT]) Stream[OUT] {
	return keyedNode(ks, "KeyedProcess", func(out runtime.Collector[OUT]) keyedLogic[K, IN] {
		return &processLogic[K, IN, OUT]{fn: perSubtask(fn), out: out}
	})
}

// perSubtask returns a shallow copy of fn if it points to a struct, else fn.
func perSubtask[F any](fn F) F {
	v := reflect.ValueOf(fn)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return fn
	}
	c := reflect.New(v.Elem().Type())
	c.Elem().Set(v.Elem())
	if f, ok := c.Interface().(F); ok {
		return f
	}
	return fn
}

// KV is a key with a value: what keyed aggregations emit.
type KV[K, V any] struct {
	Key   K
	Value V
}

func (kv KV[K, V]) String() string { return fmt.Sprintf("(%v,%v)", kv.Key, kv.Value) }

// Number is what Sum adds up.
type Number interface {
	~int | ~int8 | ~int16 | ~int32 | ~int64 | ~uint | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Reduce combines the records of each key with f and emits the running
// result after every record (Flink's rolling reduce).
func Reduce[K comparable, T any](ks KeyedStream[K, T], f func(acc, in T) T) Stream[T] {
	return keyedNode(ks, "Reduce", func(out runtime.Collector[T]) keyedLogic[K, T] {
		return &reduceLogic[K, T]{f: f, out: out}
	})
}

// Sum adds up field(record) per key and emits (key, running sum) after
// every record.
func Sum[K comparable, T any, N Number](ks KeyedStream[K, T], field func(T) N) Stream[KV[K, N]] {
	return keyedNode(ks, "Sum", func(out runtime.Collector[KV[K, N]]) keyedLogic[K, T] {
		return &sumLogic[K, T, N]{field: field, out: out}
	})
}

// Count counts the records per key and emits (key, running count) after
// every record.
func Count[K comparable, T any](ks KeyedStream[K, T]) Stream[KV[K, int64]] {
	return Sum(ks, func(T) int64 { return 1 })
}

// keyedLogic is the per-record body of a keyed operator. A logic that
// uses timers also implements timerLogic; one that acts at the end of its
// input implements endOfDataLogic.
type keyedLogic[K comparable, IN any] interface {
	open(ctx *KeyedContext[K]) error
	process(ctx *KeyedContext[K], in IN) error
	operator() any // the user function, for optional interfaces
}

// timerLogic is a keyed logic with timers: usesTimers says whether the
// operator needs the timer service (decided before open), onTimer handles
// a timer with its key restored in ctx.
type timerLogic[K comparable] interface {
	usesTimers() bool
	onTimer(ctx *KeyedContext[K], t state.Timer[K]) error
}

// endOfDataLogic is a keyed logic that acts when its input really ends.
type endOfDataLogic[K comparable] interface {
	endOfData(ctx *KeyedContext[K]) error
}

func keyedNode[K comparable, IN, OUT any](ks KeyedStream[K, IN], kind string, newLogic func(out runtime.Collector[OUT]) keyedLogic[K, IN]) Stream[OUT] {
	n := addNode[OUT](ks.s.env, kind, []plan.Input{ks.hashInput()})
	key, codec := ks.key, ks.codec
	backend := ks.s.env.cfg.stateBackend
	n.NewOperatorWithSides = func(_ int, out any, sides map[string]any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &keyedOp[K, IN]{key: key, codec: codec, backend: backend, logic: newLogic(out.(runtime.Collector[OUT])), out: out, sides: sides}
		return runtime.Collector[IN](op), op, nil, nil
	}
	return Stream[OUT]{ks.s.env, n}
}

// keyedOp runs keyed logic over a keyed state backend.
type keyedOp[K comparable, IN any] struct {
	key     func(IN) K
	codec   state.Codec[K]
	hash    state.HashFunc[K]
	backend state.RawStoreFactory // nil: heap
	logic   keyedLogic[K, IN]
	ctx     KeyedContext[K]
	kgr     checkpoint.KeyGroupRange
	fail    func(error)
	// out is the operator's output, where watermarks go on, and sides
	// the collectors of its side outputs read downstream; wm is the
	// operator's current watermark.
	out   any
	sides map[string]any
	wm    int64
	// timers is the timer service when the logic uses timers.
	timers *keyedTimers[K]
}

// ProcessWatermark implements runtime.WatermarkStage: the operator's
// watermark advances, the event-time timers it passed fire, then the
// watermark goes on downstream (to the side outputs too).
func (o *keyedOp[K, IN]) ProcessWatermark(wm int64) {
	if wm <= o.wm {
		return
	}
	o.wm = wm
	if o.timers != nil {
		if err := o.timers.fireEventTime(wm); err != nil {
			o.fail(err)
			return
		}
	}
	runtime.ForwardWatermark(o.out, wm)
	for _, s := range o.sides {
		runtime.ForwardWatermark(s, wm)
	}
}

// ProcessStatus implements runtime.WatermarkStage.
func (o *keyedOp[K, IN]) ProcessStatus(idle bool) {
	runtime.ForwardStatus(o.out, idle)
	for _, s := range o.sides {
		runtime.ForwardStatus(s, idle)
	}
}

// EndOfData implements runtime.EndOfDataListener: the input really ended
// (after the maximum watermark fired every event-time timer).
func (o *keyedOp[K, IN]) EndOfData() error {
	if l, ok := o.logic.(endOfDataLogic[K]); ok {
		o.ctx.domain = 0
		return l.endOfData(&o.ctx)
	}
	return nil
}

func (o *keyedOp[K, IN]) Open(oc *runtime.OperatorContext) error {
	o.hash = state.HasherFor(o.codec)
	o.kgr = oc.KeyGroups
	o.fail = oc.Fail
	o.wm = MinWatermark
	var b state.KeyedBackend[K]
	if o.backend == nil {
		b = state.NewHeapKeyedBackend[K](o.codec, o.hash, oc.MaxParallelism, oc.KeyGroups)
	} else {
		store, err := o.backend.NewRawStore(state.StoreInfo{Job: oc.JobName, OperatorUID: oc.OperatorUID, Subtask: oc.Subtask, Logger: oc.Logger})
		if err != nil {
			return fmt.Errorf("cannot create the keyed state of %s: %w", oc.OperatorName, err)
		}
		rb, err := state.NewRawKeyedBackend[K](store, o.codec, o.hash, oc.MaxParallelism, oc.KeyGroups, oc.Fail)
		if err != nil {
			store.Close()
			return fmt.Errorf("cannot create the keyed state of %s: %w", oc.OperatorName, err)
		}
		rb.ReuseRestoredFiles = oc.RestoredOwned
		b = rb
	}
	o.ctx = KeyedContext[K]{backend: b, op: oc, wm: &o.wm, sides: o.sides}
	if len(oc.RestoredKeyed) > 0 {
		if err := b.RestoreHandles(oc.RestoredKeyed, oc.OpenStream); err != nil {
			return fmt.Errorf("cannot restore keyed state of %s (uid %q) from checkpoint %d: %w", oc.OperatorName, oc.OperatorUID, oc.RestoredCheckpoint, err)
		}
	}
	if tl, ok := o.logic.(timerLogic[K]); ok && tl.usesTimers() {
		t, err := newKeyedTimers(&o.ctx, o.hash, tl)
		if err != nil {
			return o.ctx.registerError(err)
		}
		o.timers = t
		o.ctx.timers = t
	}
	if err := o.logic.open(&o.ctx); err != nil {
		return err
	}
	if o.timers != nil {
		o.timers.scheduleProcessingTime()
	}
	return nil
}

func (o *keyedOp[K, IN]) Collect(in IN) {
	k := o.key(in)
	o.ctx.backend.SetCurrentKeyHashed(k, o.hash(k))
	if err := o.logic.process(&o.ctx, in); err != nil {
		o.fail(err)
	}
}

func (o *keyedOp[K, IN]) SnapshotState(id checkpoint.ID) (runtime.OperatorSnapshot, error) {
	return o.SnapshotStateFor(checkpoint.Barrier{ID: id})
}

// SnapshotStateFor implements runtime.BarrierSnapshotter: savepoints are
// always written in the canonical format.
func (o *keyedOp[K, IN]) SnapshotStateFor(b checkpoint.Barrier) (runtime.OperatorSnapshot, error) {
	s, err := o.ctx.backend.SnapshotFor(b.ID, b.Kind)
	if err != nil {
		return runtime.OperatorSnapshot{}, &runtime.DeclineError{Err: err}
	}
	return runtime.OperatorSnapshot{Keyed: s, KeyRange: o.kgr}, nil
}

func (o *keyedOp[K, IN]) NotifyCheckpointComplete(id checkpoint.ID) error {
	if o.ctx.backend != nil {
		o.ctx.backend.NotifyCheckpointComplete(id)
	}
	if l, ok := o.logic.operator().(CheckpointListener); ok {
		return l.NotifyCheckpointComplete(id)
	}
	return nil
}

func (o *keyedOp[K, IN]) NotifyCheckpointAborted(id checkpoint.ID) error {
	if o.ctx.backend != nil {
		o.ctx.backend.NotifyCheckpointAborted(id)
	}
	if l, ok := o.logic.operator().(CheckpointListener); ok {
		return l.NotifyCheckpointAborted(id)
	}
	return nil
}

func (o *keyedOp[K, IN]) Finish() error { return nil }

func (o *keyedOp[K, IN]) Close() error {
	if o.timers != nil {
		o.timers.stop()
	}
	if o.ctx.backend != nil {
		return o.ctx.backend.Close()
	}
	return nil
}

type processLogic[K comparable, IN, OUT any] struct {
	fn  KeyedProcessFunction[K, IN, OUT]
	out runtime.Collector[OUT]
}

func (l *processLogic[K, IN, OUT]) open(ctx *KeyedContext[K]) error {
	if o, ok := l.fn.(KeyedOpener[K]); ok {
		return o.Open(ctx)
	}
	return nil
}

func (l *processLogic[K, IN, OUT]) process(ctx *KeyedContext[K], in IN) error {
	return l.fn.ProcessElement(ctx, in, l.out)
}

func (l *processLogic[K, IN, OUT]) operator() any { return l.fn }

func (l *processLogic[K, IN, OUT]) usesTimers() bool {
	_, ok := l.fn.(KeyedTimerFunction[K, OUT])
	return ok
}

func (l *processLogic[K, IN, OUT]) onTimer(ctx *KeyedContext[K], t state.Timer[K]) error {
	return l.fn.(KeyedTimerFunction[K, OUT]).OnTimer(ctx, t.Timestamp, l.out)
}

func (l *processLogic[K, IN, OUT]) endOfData(ctx *KeyedContext[K]) error {
	if f, ok := l.fn.(KeyedFinisher[K, OUT]); ok {
		return f.Finish(ctx, l.out)
	}
	return nil
}

type reduceLogic[K comparable, T any] struct {
	f   func(acc, in T) T
	out runtime.Collector[T]
	st  ValueState[T]
}

func (l *reduceLogic[K, T]) open(ctx *KeyedContext[K]) (err error) {
	l.st, err = GetValueState[T](ctx, "reduce")
	return err
}

func (l *reduceLogic[K, T]) process(_ *KeyedContext[K], in T) error {
	if acc, ok := l.st.Value(); ok {
		in = l.f(acc, in)
	}
	l.st.Update(in)
	l.out.Collect(in)
	return nil
}

func (l *reduceLogic[K, T]) operator() any { return l.f }

type sumLogic[K comparable, T any, N Number] struct {
	field func(T) N
	out   runtime.Collector[KV[K, N]]
	st    ValueState[N]
}

func (l *sumLogic[K, T, N]) open(ctx *KeyedContext[K]) (err error) {
	l.st, err = GetValueState[N](ctx, "sum")
	return err
}

func (l *sumLogic[K, T, N]) process(ctx *KeyedContext[K], in T) error {
	sum, _ := l.st.Value()
	sum += l.field(in)
	l.st.Update(sum)
	l.out.Collect(KV[K, N]{Key: ctx.backend.CurrentKey(), Value: sum})
	return nil
}

func (l *sumLogic[K, T, N]) operator() any { return l.field }
