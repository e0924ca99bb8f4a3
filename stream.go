package weir

import (
	"fmt"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// node is one transformation of the logical graph.
type node struct {
	env         *Environment
	id          int
	kind        string
	name        string
	uid         string
	parallelism int // 0: the environment's default
	fixedPar    bool
	inputs      []input
	isSource    bool
	isSink      bool
	// parallelismOf, when set, gives the node the resolved parallelism of
	// that node: internal operators that must chain to their input
	// (ConnectBroadcast's input tagging) follow its parallelism.
	parallelismOf *node
	// build creates the operator of one subtask; out is the node's
	// Collector[OUT] (nil for sinks); it returns the Collector[IN] the
	// upstream feeds (nil for sources) and, for sources, the driver.
	build func(subtask int, out any) (in any, op runtime.Operator, src runtime.SourceDriver, err error)
	// fanOut joins several Collector[OUT] into one.
	fanOut func(outs []any) any
}

type input struct {
	from *node
	kind runtime.PartitionKind
	auto bool // partitioning not chosen by the user: forward or rebalance
	typ  runtime.EdgeType
}

// Stream is a stream of records of type T: the output of one transformation.
type Stream[T any] struct {
	n *node
}

func addNode[OUT any](env *Environment, kind string, inputs []input) *node {
	n := &node{env: env, id: len(env.nodes), kind: kind, name: kind, inputs: inputs}
	n.fanOut = func(outs []any) any {
		cs := make([]runtime.Collector[OUT], len(outs))
		for i, o := range outs {
			cs[i] = o.(runtime.Collector[OUT])
		}
		return runtime.FanOut(cs)
	}
	env.nodes = append(env.nodes, n)
	return n
}

func forwardInput[T any](s Stream[T]) input {
	return input{from: s.n, kind: runtime.Forward, auto: true, typ: edgeTypeOf[T](nil)}
}

// Name sets the operator's display name.
func (s Stream[T]) Name(name string) Stream[T] {
	s.n.name = name
	return s
}

// UID sets the operator's stable identity, by which its state is found in a
// checkpoint. Set it on every stateful operator of a long-lived job: without
// it the UID is derived from the operator's position in the program.
func (s Stream[T]) UID(uid string) Stream[T] {
	s.n.uid = uid
	return s
}

// SetParallelism sets the operator's number of parallel subtasks.
func (s Stream[T]) SetParallelism(p int) Stream[T] {
	if p < 1 {
		s.n.env.setErr(fmt.Errorf("operator %s: parallelism must be at least 1, got %d", s.n.name, p))
		return s
	}
	if s.n.fixedPar && p != 1 {
		s.n.env.setErr(fmt.Errorf("operator %s is not parallel: its parallelism must be 1", s.n.name))
		return s
	}
	s.n.parallelism = p
	return s
}

// Rebalance spreads the stream round robin over the next operator's subtasks.
func (s Stream[T]) Rebalance() Stream[T] {
	return partitioned(s, runtime.Rebalance, "Rebalance")
}

// Broadcast sends every record to every subtask of the next operator.
func (s Stream[T]) Broadcast() Stream[T] {
	return partitioned(s, runtime.Broadcast, "Broadcast")
}

// partitioned inserts an identity operator reached through the given
// partitioning, so the next transformation reads it with that partitioning.
func partitioned[T any](s Stream[T], kind runtime.PartitionKind, name string) Stream[T] {
	in := forwardInput(s)
	in.kind, in.auto = kind, false
	n := addNode[T](s.n.env, name, []input{in})
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		o := out.(runtime.Collector[T])
		return o, &baseOp{}, nil, nil
	}
	return Stream[T]{n}
}

// Map applies f to every record.
func Map[T, U any](s Stream[T], f func(T) U) Stream[U] {
	n := addNode[U](s.n.env, "Map", []input{forwardInput(s)})
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &mapOp[T, U]{f: f, out: out.(runtime.Collector[U])}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{n}
}

// MapErr applies f to every record; an error fails the task (and the job
// fails over under its restart strategy).
func MapErr[T, U any](s Stream[T], f func(T) (U, error)) Stream[U] {
	n := addNode[U](s.n.env, "Map", []input{forwardInput(s)})
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &mapErrOp[T, U]{f: f, out: out.(runtime.Collector[U])}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{n}
}

// FlatMap calls f for every record; f emits any number of records.
func FlatMap[T, U any](s Stream[T], f func(T, Collector[U])) Stream[U] {
	n := addNode[U](s.n.env, "FlatMap", []input{forwardInput(s)})
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &flatMapOp[T, U]{f: f, out: out.(runtime.Collector[U])}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{n}
}

// Filter keeps the records for which keep returns true.
func Filter[T any](s Stream[T], keep func(T) bool) Stream[T] {
	n := addNode[T](s.n.env, "Filter", []input{forwardInput(s)})
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &filterOp[T]{keep: keep, out: out.(runtime.Collector[T])}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{n}
}

// Union merges streams of the same type into one.
func Union[T any](first Stream[T], more ...Stream[T]) Stream[T] {
	ins := []input{forwardInput(first)}
	for _, s := range more {
		if s.n.env != first.n.env {
			first.n.env.setErr(fmt.Errorf("union of streams from different environments"))
		}
		ins = append(ins, forwardInput(s))
	}
	n := addNode[T](first.n.env, "Union", ins)
	n.build = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		return out.(runtime.Collector[T]), &baseOp{}, nil, nil
	}
	return Stream[T]{n}
}

// KeyedStream is a stream partitioned by key: records with equal keys go to
// the same subtask, whose keyed state is scoped to the record's key.
type KeyedStream[K comparable, T any] struct {
	s     Stream[T]
	key   func(T) K
	codec state.Codec[K]
}

// KeyBy partitions s by the key key(record). Keys are hashed into key groups
// (murmur3 of the key, modulo the max parallelism); each subtask of the
// next operator owns a contiguous range of key groups. Integer and string
// keys hash without allocation; other key types are encoded with their
// codec (JSON unless KeyByWithCodec is used) and must encode
// deterministically.
func KeyBy[T any, K comparable](s Stream[T], key func(T) K) KeyedStream[K, T] {
	return KeyByWithCodec(s, key, state.CodecFor[K]())
}

// KeyByWithCodec is KeyBy with an explicit codec for the key, used both to
// hash it and to write it into snapshots.
func KeyByWithCodec[T any, K comparable](s Stream[T], key func(T) K, codec state.Codec[K]) KeyedStream[K, T] {
	return KeyedStream[K, T]{s: s, key: key, codec: codec}
}

func (ks KeyedStream[K, T]) hashInput() input {
	key, codec := ks.key, ks.codec
	newHash := func() func(T) uint32 {
		h := state.HasherFor(codec)
		return func(r T) uint32 { return h(key(r)) }
	}
	return input{from: ks.s.n, kind: runtime.Hash, typ: edgeTypeOf[T](newHash)}
}

// Print writes every record to the environment's stdout, prefixed with the
// subtask number ("2> ...") when the sink runs with parallelism above 1.
// Like Flink's print(), it prints records again after a restore.
func (s Stream[T]) Print() Stream[T] {
	n := addNode[T](s.n.env, "Print", []input{forwardInput(s)})
	n.isSink = true
	w := s.n.env.print
	n.build = func(subtask int, _ any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &printOp[T]{w: w, subtask: subtask}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{n}
}

// SinkTo writes the stream into sink.
func (s Stream[T]) SinkTo(sink Sink[T]) Stream[T] {
	n := addNode[T](s.n.env, "Sink", []input{forwardInput(s)})
	n.isSink = true
	n.build = func(subtask int, _ any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &sinkOp[T]{sink: sink}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{n}
}
