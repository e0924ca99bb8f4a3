package weir

import (
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/runtime"
)

// WindowedStream is a keyed stream cut into windows (Flink's
// WindowedStream): Window(keyed, assigner), optionally a trigger, an
// allowed lateness and a side output for late records, then a window
// function — Reduce, WindowAggregate, WindowProcess or
// WindowAggregateProcess — gives the stream of window results.
//
// TimeWindow contents, trigger values and timers are keyed state of the window
// operator: they are checkpointed, restored and redistributed with their
// key on rescale. Results carry the window's MaxTimestamp as their event
// timestamp.
type WindowedStream[K comparable, T any] struct {
	ks       KeyedStream[K, T]
	assigner WindowAssigner
	trigger  Trigger
	lateness int64
	lateTag  string
	all      bool
	// err is a definition error found before the window operator exists
	// (reported by windowNode with the operator's name).
	err error
}

// TimeWindow cuts a keyed stream into the windows of assigner. Event-time
// windows need record timestamps (a WatermarkStrategy at the source or
// AssignTimestampsAndWatermarks) and fire as the watermark passes their
// end; at the end of a bounded input every window fires.
func Window[K comparable, T any](ks KeyedStream[K, T], assigner WindowAssigner) WindowedStream[K, T] {
	return WindowedStream[K, T]{ks: ks, assigner: assigner}
}

// CountWindow groups every n records of a key (global windows that fire
// and purge at every n-th record).
func CountWindow[K comparable, T any](ks KeyedStream[K, T], n int64) WindowedStream[K, T] {
	w := Window(ks, GlobalWindows{}).Trigger(PurgingTrigger(CountTrigger(n)))
	if n < 1 {
		w.err = fmt.Errorf("a count window needs at least 1 record, got %d", n)
	}
	return w
}

// AllKey is the key of the one group of WindowAll.
type AllKey = uint8

// WindowAll cuts the whole stream into windows in one subtask (Flink's
// windowAll): a window operator with parallelism 1 over a stream keyed by
// a constant.
func WindowAll[T any](s Stream[T], assigner WindowAssigner) WindowedStream[AllKey, T] {
	w := Window(KeyBy(s, func(T) AllKey { return 0 }), assigner)
	w.all = true
	return w
}

// Trigger replaces the assigner's default trigger.
func (w WindowedStream[K, T]) Trigger(t Trigger) WindowedStream[K, T] {
	w.trigger = t
	return w
}

// AllowedLateness keeps event-time windows for d after the watermark
// passed their end: a late record within d is added to its window, which
// fires again (with EventTimeTrigger); a later record is dropped, or goes
// to the side output of SideOutputLateData. Processing-time windows ignore
// it.
func (w WindowedStream[K, T]) AllowedLateness(d time.Duration) WindowedStream[K, T] {
	if d < 0 {
		if w.err == nil {
			w.err = fmt.Errorf("allowed lateness must not be negative, got %v", d)
		}
		return w
	}
	w.lateness = d.Milliseconds()
	return w
}

// SideOutputLateData sends the records that arrive after their windows'
// allowed lateness to the side output tag (read it with GetSideOutput on
// the window function's stream) instead of dropping them.
func (w WindowedStream[K, T]) SideOutputLateData(tag OutputTag[T]) WindowedStream[K, T] {
	w.lateTag = tag.id
	return w
}

// WindowContext is what a window function sees: the key and window it is
// called for, the time, and the key's KeyedContext (per-key state across
// windows, side outputs with Output).
type WindowContext[K comparable] struct {
	keyed  *KeyedContext[K]
	window TimeWindow
}

// TimeWindow is the window being emitted.
func (c *WindowContext[K]) Window() TimeWindow { return c.window }

// Key is the key of the window.
func (c *WindowContext[K]) Key() K { return c.keyed.CurrentKey() }

// CurrentWatermark is the operator's watermark.
func (c *WindowContext[K]) CurrentWatermark() int64 { return c.keyed.CurrentWatermark() }

// CurrentProcessingTime is the processing time in milliseconds.
func (c *WindowContext[K]) CurrentProcessingTime() int64 { return c.keyed.CurrentProcessingTime() }

// Keyed is the key's context: keyed state that lives across windows, side
// outputs (weir.Output).
func (c *WindowContext[K]) Keyed() *KeyedContext[K] { return c.keyed }

// ProcessWindowFunction computes a window's result from all of its
// records (in arrival order, except that when session windows merge,
// each merged window's records stay together, one window after the other;
// elems is valid only during the call).
// Implementations may also implement KeyedOpener.
type ProcessWindowFunction[K comparable, IN, OUT any] interface {
	Process(ctx *WindowContext[K], elems []IN, out Collector[OUT]) error
}

// ProcessWindowFunc adapts a function to ProcessWindowFunction.
type ProcessWindowFunc[K comparable, IN, OUT any] func(ctx *WindowContext[K], elems []IN, out Collector[OUT]) error

// Process implements ProcessWindowFunction.
func (f ProcessWindowFunc[K, IN, OUT]) Process(ctx *WindowContext[K], elems []IN, out Collector[OUT]) error {
	return f(ctx, elems, out)
}

// MergingAggregator is an Aggregator whose accumulators combine: session
// windows, which merge, need it.
type MergingAggregator[IN, ACC, OUT any] interface {
	Aggregator[IN, ACC, OUT]
	Merge(a, b ACC) ACC
}

// Reduce emits, per window, the reduction of its records with f: one
// value per key and window is kept, not the records.
func (w WindowedStream[K, T]) Reduce(f func(a, b T) T) Stream[T] {
	return windowNode(w, "WindowReduce", func(out runtime.Collector[T]) windowContents[K, T, T] {
		return &reduceContents[K, T]{f: f, out: out}
	})
}

// WindowAggregate emits, per window, agg's result over its records: one
// accumulator per key and window is kept, not the records.
func WindowAggregate[K comparable, T, ACC, OUT any](w WindowedStream[K, T], agg Aggregator[T, ACC, OUT]) Stream[OUT] {
	return windowNode(w, "WindowAggregate", func(out runtime.Collector[OUT]) windowContents[K, T, OUT] {
		return newAggContents[K](agg, func(_ *WindowContext[K], v OUT, _ runtime.Collector[OUT]) error {
			out.Collect(v)
			return nil
		}, out)
	})
}

// WindowAggregateProcess is WindowAggregate whose result per window is
// handed to fn with the window's metadata (a one-element slice).
func WindowAggregateProcess[K comparable, T, ACC, V, OUT any](w WindowedStream[K, T], agg Aggregator[T, ACC, V], fn ProcessWindowFunction[K, V, OUT]) Stream[OUT] {
	return windowNode(w, "WindowAggregate", func(out runtime.Collector[OUT]) windowContents[K, T, OUT] {
		fn := perSubtask(fn)
		one := make([]V, 1)
		c := newAggContents[K](agg, func(ctx *WindowContext[K], v V, out runtime.Collector[OUT]) error {
			one[0] = v
			return fn.Process(ctx, one, out)
		}, out)
		c.user_ = fn
		return c
	})
}

// WindowProcess emits fn's result over every record of a window: the
// records are kept in keyed state until the window is purged.
func WindowProcess[K comparable, T, OUT any](w WindowedStream[K, T], fn ProcessWindowFunction[K, T, OUT]) Stream[OUT] {
	return windowNode(w, "WindowProcess", func(out runtime.Collector[OUT]) windowContents[K, T, OUT] {
		return &bufferContents[K, T, OUT]{fn: perSubtask(fn), out: out}
	})
}

// windowNode adds the window operator for w with the contents newContents
// builds.
func windowNode[K comparable, T, OUT any](w WindowedStream[K, T], kind string, newContents func(out runtime.Collector[OUT]) windowContents[K, T, OUT]) Stream[OUT] {
	env := w.ks.s.env
	trigger := w.trigger
	// Definition errors name the operator: they are reported with its
	// final name (set after this returns) by Environment.Err.
	var errs []error
	if w.err != nil {
		errs = append(errs, w.err)
	}
	if w.assigner == nil {
		errs = append(errs, fmt.Errorf("a window needs an assigner"))
		trigger = NeverTrigger()
	} else if trigger == nil {
		trigger = w.assigner.DefaultTrigger()
	}
	for _, v := range []any{w.assigner, trigger} {
		if c, ok := v.(interface{ validate() error }); ok {
			if err := c.validate(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	spec := windowSpec{assigner: w.assigner, trigger: trigger, lateness: w.lateness, lateTag: w.lateTag,
		eventTime: w.assigner != nil && w.assigner.IsEventTime()}
	if w.assigner != nil && w.assigner.IsMerging() {
		probe := newContents(nil)
		if err := probe.canMerge(); err != nil {
			errs = append(errs, fmt.Errorf("over merging windows: %w", err))
		}
	}
	s := keyedNode(w.ks, kind, func(out runtime.Collector[OUT]) keyedLogic[K, T] {
		return &windowLogic[K, T, OUT]{spec: spec, contents: newContents(out)}
	})
	for _, err := range errs {
		env.setNodeErr(s.n, err)
	}
	if w.all {
		s.n.Parallelism = 1
		s.n.FixedParallelism = true
	}
	return s
}

// windowSpec is a window operator's configuration.
type windowSpec struct {
	assigner WindowAssigner
	trigger  Trigger
	lateness int64
	lateTag  string
	// eventTime is assigner.IsEventTime(), asked once.
	eventTime bool
}

// cleanupTime is when w's state is dropped: its end plus the allowed
// lateness in event time, its end in processing time; never for the
// global window.
func (s *windowSpec) cleanupTime(w TimeWindow) int64 {
	if w == GlobalWindow {
		return math.MaxInt64
	}
	if !s.eventTime {
		return w.MaxTimestamp()
	}
	t := w.MaxTimestamp() + s.lateness
	if t < w.MaxTimestamp() { // overflow
		return math.MaxInt64
	}
	return t
}
