package weir

import (
	"fmt"

	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// Stream is a stream of records of type T: the output of one transformation.
type Stream[T any] struct {
	env *Environment
	n   *plan.Node
}

// addNode adds a transformation whose records are of type OUT to env's
// logical graph.
func addNode[OUT any](env *Environment, kind string, inputs []plan.Input) *plan.Node {
	return env.graph.Add(&plan.Node{Kind: kind, Inputs: inputs, FanOut: plan.FanOut[OUT]})
}

// forwardInput reads s with the partitioning left to the planner: forward
// at equal parallelism, rebalance otherwise.
func forwardInput[T any](s Stream[T]) plan.Input {
	return plan.Input{From: s.n, Partitioning: runtime.Forward, Auto: true, Type: edgeTypeOf[T](nil)}
}

// Name sets the operator's display name.
func (s Stream[T]) Name(name string) Stream[T] {
	s.n.Name = name
	return s
}

// UID sets the operator's stable identity, by which its state is found in a
// checkpoint. Set it on every stateful operator of a long-lived job: without
// it the UID is derived from the operator's position in the program.
func (s Stream[T]) UID(uid string) Stream[T] {
	s.n.UID = uid
	return s
}

// SetParallelism sets the operator's number of parallel subtasks.
func (s Stream[T]) SetParallelism(p int) Stream[T] {
	if p < 1 {
		s.env.setErr(fmt.Errorf("operator %s: parallelism must be at least 1, got %d", s.n.Name, p))
		return s
	}
	if s.n.FixedParallelism && p != 1 {
		s.env.setErr(fmt.Errorf("operator %s is not parallel: its parallelism must be 1", s.n.Name))
		return s
	}
	s.n.Parallelism = p
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
	in.Partitioning, in.Auto = kind, false
	n := addNode[T](s.env, name, []plan.Input{in})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		o := out.(runtime.Collector[T])
		return o, &baseOp{}, nil, nil
	}
	return Stream[T]{s.env, n}
}

// Map applies f to every record.
func Map[T, U any](s Stream[T], f func(T) U) Stream[U] {
	n := addNode[U](s.env, "Map", []plan.Input{forwardInput(s)})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &mapOp[T, U]{f: f, emits: emits[U]{out.(runtime.Collector[U])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{s.env, n}
}

// MapErr applies f to every record; an error fails the task (and the job
// fails over under its restart strategy).
func MapErr[T, U any](s Stream[T], f func(T) (U, error)) Stream[U] {
	n := addNode[U](s.env, "Map", []plan.Input{forwardInput(s)})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &mapErrOp[T, U]{f: f, emits: emits[U]{out.(runtime.Collector[U])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{s.env, n}
}

// FlatMap calls f for every record; f emits any number of records.
func FlatMap[T, U any](s Stream[T], f func(T, Collector[U])) Stream[U] {
	n := addNode[U](s.env, "FlatMap", []plan.Input{forwardInput(s)})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &flatMapOp[T, U]{f: f, emits: emits[U]{out.(runtime.Collector[U])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[U]{s.env, n}
}

// Filter keeps the records for which keep returns true.
func Filter[T any](s Stream[T], keep func(T) bool) Stream[T] {
	n := addNode[T](s.env, "Filter", []plan.Input{forwardInput(s)})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &filterOp[T]{keep: keep, emits: emits[T]{out.(runtime.Collector[T])}}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{s.env, n}
}

// Union merges streams of the same type into one.
func Union[T any](first Stream[T], more ...Stream[T]) Stream[T] {
	ins := []plan.Input{forwardInput(first)}
	for _, s := range more {
		if s.env != first.env {
			first.env.setErr(fmt.Errorf("union of streams from different environments"))
		}
		ins = append(ins, forwardInput(s))
	}
	n := addNode[T](first.env, "Union", ins)
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		return out.(runtime.Collector[T]), &baseOp{}, nil, nil
	}
	return Stream[T]{first.env, n}
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

func (ks KeyedStream[K, T]) hashInput() plan.Input {
	key, codec := ks.key, ks.codec
	newHash := func() func(T) uint32 {
		h := state.HasherFor(codec)
		return func(r T) uint32 { return h(key(r)) }
	}
	return plan.Input{From: ks.s.n, Partitioning: runtime.Hash, Type: edgeTypeOf[T](newHash)}
}

// Print writes every record to the environment's stdout, prefixed with the
// subtask number ("2> ...") when the sink runs with parallelism above 1.
// Like Flink's print(), it prints records again after a restore.
func (s Stream[T]) Print() Stream[T] {
	n := addNode[T](s.env, "Print", []plan.Input{forwardInput(s)})
	n.IsSink = true
	w := s.env.print
	n.NewOperator = func(subtask int, _ any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &printOp[T]{w: w, subtask: subtask}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{s.env, n}
}

// SinkTo writes the stream into sink.
func (s Stream[T]) SinkTo(sink Sink[T]) Stream[T] {
	n := addNode[T](s.env, "Sink", []plan.Input{forwardInput(s)})
	n.IsSink = true
	n.NewOperator = func(subtask int, _ any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &sinkOp[T]{sink: sink}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{s.env, n}
}
