package weir

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
)

// ProcessingTimeService runs callbacks on a subtask's goroutine at a
// processing time (Flink's ProcessingTimeService): the subtask's mailbox
// receives the callback when it is due, so it never runs concurrently with
// the records, snapshots or notifications of the subtask. Now is the
// current processing time; Schedule runs fn at or after at and returns a
// function that cancels it if it has not run. Call both only on the
// subtask's goroutine (from a function's or writer's own methods, or from a
// callback). Callbacks are not checkpointed and stop when the subtask
// ends.
type ProcessingTimeService = runtime.ProcessingTimeService

// Permanent marks err as a failure that no restart can fix (a malformed
// input record, a configuration the job cannot run with): returned from a
// source reader or a function, it fails the job at once, whatever the
// restart strategy, instead of restarting into the same error.
func Permanent(err error) error { return runtime.Permanent(err) }

// ProcessFunction processes the records of a (non-keyed) stream one at a
// time (Flink's ProcessFunction). It may also implement:
//
//   - ProcessOpener: setup per subtask, the place to register timers;
//   - ProcessTimerFunction: processing-time timers (OnTimer);
//   - ProcessFinisher: act when the input really ends;
//   - CheckpointedFunction (operator state) and CheckpointListener.
//
// Every method runs on the subtask's goroutine, never concurrently.
type ProcessFunction[IN, OUT any] interface {
	ProcessElement(ctx *ProcessContext, in IN, out Collector[OUT]) error
}

// ProcessOpener is implemented by process functions that need setup per
// subtask: Open runs once before the first record.
type ProcessOpener interface {
	Open(ctx *ProcessContext) error
}

// ProcessTimerFunction is implemented by process functions with
// processing-time timers: OnTimer is called on the subtask's goroutine,
// between records, once the processing time reached a timer registered
// with ProcessContext.RegisterProcessingTimeTimer; it fires also while no
// record arrives. Records it emits carry no timestamp.
//
// These timers belong to the subtask, not to a key: they are not keyed
// state and are not checkpointed (as in Flink). After a restore none is
// pending: a function that needs a timer registers it again in Open.
// Timers still pending when the input ends (see ProcessFinisher) or the
// subtask stops (failure, cancellation) never fire.
type ProcessTimerFunction[OUT any] interface {
	OnTimer(ctx *ProcessContext, ts int64, out Collector[OUT]) error
}

// ProcessFinisher is implemented by process functions that act when their
// input really ends (a bounded source reached its end; not when the job is
// stopped with a savepoint): Finish runs once per subtask after every
// record and after the maximum watermark, and before the final checkpoint,
// so what it emits reaches exactly-once sinks. Pending processing-time
// timers are dropped just before Finish, and none fires after it.
type ProcessFinisher[OUT any] interface {
	Finish(ctx *ProcessContext, out Collector[OUT]) error
}

// StreamProcessFunc adapts a function to ProcessFunction.
type StreamProcessFunc[IN, OUT any] func(ctx *ProcessContext, in IN, out Collector[OUT]) error

// ProcessElement implements ProcessFunction.
func (f StreamProcessFunc[IN, OUT]) ProcessElement(ctx *ProcessContext, in IN, out Collector[OUT]) error {
	return f(ctx, in, out)
}

// ProcessContext is what a ProcessFunction sees: the record's timestamp,
// the operator's watermark, processing time and timers.
type ProcessContext struct {
	op *runtime.OperatorContext
	wm int64
	// timers are the pending processing-time timers by timestamp, with
	// the cancel of their callback; onTimer is nil when the function has
	// no OnTimer.
	timers  map[int64]func()
	onTimer func(ts int64)
	closed  bool
}

// Timestamp is the event timestamp of the record being processed; ok is
// false when it has none (no event time, or in OnTimer).
func (c *ProcessContext) Timestamp() (ts int64, ok bool) {
	if c.op.Timestamp == nil || *c.op.Timestamp == NoTimestamp {
		return NoTimestamp, false
	}
	return *c.op.Timestamp, true
}

// CurrentWatermark is the operator's event-time watermark (MinWatermark
// before the first, MaxWatermark in Finish after a bounded input).
func (c *ProcessContext) CurrentWatermark() int64 { return c.wm }

// CurrentProcessingTime is the processing time in milliseconds since 1970.
func (c *ProcessContext) CurrentProcessingTime() int64 {
	return c.op.ProcessingTime.Now().UnixMilli()
}

// ProcessingTimeService is the subtask's service for callbacks of your
// own at a processing time (see ProcessingTimeService).
func (c *ProcessContext) ProcessingTimeService() ProcessingTimeService { return c.op.ProcessingTime }

// RegisterProcessingTimeTimer registers a timer that calls OnTimer when
// the processing time reaches ts (milliseconds since 1970); a time already
// passed fires at the next turn of the subtask's mailbox. Registering the
// same timestamp twice gives one timer. A function without OnTimer fails
// the task.
func (c *ProcessContext) RegisterProcessingTimeTimer(ts int64) {
	if c.onTimer == nil {
		c.op.Fail(fmt.Errorf("operator %s (uid %q): %w", c.op.OperatorName, c.op.OperatorUID, errNoProcessTimers))
		return
	}
	if c.closed {
		return
	}
	if _, ok := c.timers[ts]; ok {
		return
	}
	c.timers[ts] = c.op.ProcessingTime.Schedule(time.UnixMilli(ts), func() { c.onTimer(ts) })
}

// DeleteProcessingTimeTimer deletes the timer at ts, if there is one.
func (c *ProcessContext) DeleteProcessingTimeTimer(ts int64) {
	if cancel, ok := c.timers[ts]; ok {
		cancel()
		delete(c.timers, ts)
	}
}

// Subtask is the index of the parallel subtask running the function.
func (c *ProcessContext) Subtask() int { return c.op.Subtask }

// Parallelism is the operator's parallelism.
func (c *ProcessContext) Parallelism() int { return c.op.Parallelism }

// Logger is the job's logger.
func (c *ProcessContext) Logger() *slog.Logger { return c.op.Logger }

var errNoProcessTimers = errors.New("the function registers timers but does not implement OnTimer (weir.ProcessTimerFunction)")

// ProcessStream applies fn to every record of s (Flink's
// DataStream.process). Watermarks pass through the operator; fn may use
// processing-time timers and a Finish hook. Like Process, it gives every
// parallel subtask its own shallow copy of fn when fn is a pointer to a
// struct.
func ProcessStream[IN, OUT any](s Stream[IN], fn ProcessFunction[IN, OUT]) Stream[OUT] {
	n := addNode[OUT](s.env, "Process", []plan.Input{forwardInput(s)})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: ProcessStream needs a function, got nil", n.Name))
	}
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &processOp[IN, OUT]{fn: perSubtask(fn), emits: emits[OUT]{out.(runtime.Collector[OUT])}}
		op.richOp.fn = op.fn
		return runtime.Collector[IN](op), op, nil, nil
	}
	return Stream[OUT]{s.env, n}
}

// processOp runs a ProcessFunction: operator state and notifications
// through richOp, the watermark and the subtask's timers in ctx.
type processOp[IN, OUT any] struct {
	richOp
	emits[OUT]
	fn  ProcessFunction[IN, OUT]
	ctx ProcessContext
}

func (o *processOp[IN, OUT]) Open(oc *runtime.OperatorContext) error {
	if err := o.richOp.Open(oc); err != nil {
		return err
	}
	o.ctx = ProcessContext{op: oc, wm: MinWatermark, timers: map[int64]func(){}}
	if tf, ok := o.fn.(ProcessTimerFunction[OUT]); ok {
		o.ctx.onTimer = func(ts int64) { o.fire(tf, ts) }
	}
	if op, ok := o.fn.(ProcessOpener); ok {
		if err := op.Open(&o.ctx); err != nil {
			return fmt.Errorf("operator %s: %w", oc.OperatorName, err)
		}
	}
	return nil
}

// fire runs OnTimer for the timer at ts (from the subtask's mailbox):
// emitted records carry no timestamp.
func (o *processOp[IN, OUT]) fire(tf ProcessTimerFunction[OUT], ts int64) {
	delete(o.ctx.timers, ts)
	if o.ctx.closed {
		return
	}
	slot := o.ctx.op.Timestamp
	var saved int64
	if slot != nil {
		saved = *slot
		*slot = NoTimestamp
	}
	err := tf.OnTimer(&o.ctx, ts, o.out)
	if slot != nil {
		*slot = saved
	}
	if err != nil {
		o.failed(fmt.Errorf("processing-time timer at %d: %w", ts, err))
	}
}

func (o *processOp[IN, OUT]) Collect(r IN) {
	if err := o.fn.ProcessElement(&o.ctx, r, o.out); err != nil {
		o.failed(err)
	}
}

// ProcessWatermark implements runtime.WatermarkStage: the function's
// watermark advances and goes on downstream.
func (o *processOp[IN, OUT]) ProcessWatermark(wm int64) {
	if wm > o.ctx.wm {
		o.ctx.wm = wm
	}
	o.emits.ProcessWatermark(wm)
}

// EndOfData implements runtime.EndOfDataListener: the pending timers are
// dropped (as Flink quiesces its timer service at the end of input), then
// Finish runs, before the final checkpoint.
func (o *processOp[IN, OUT]) EndOfData() error {
	o.cancelTimers()
	if f, ok := o.fn.(ProcessFinisher[OUT]); ok {
		if err := f.Finish(&o.ctx, o.out); err != nil {
			return fmt.Errorf("operator %s: %w", o.name, err)
		}
	}
	return nil
}

// Close cancels the pending timers: none fires after it.
func (o *processOp[IN, OUT]) Close() error {
	o.cancelTimers()
	return nil
}

// cancelTimers cancels the pending timers and ignores new ones.
func (o *processOp[IN, OUT]) cancelTimers() {
	o.ctx.closed = true
	for ts, cancel := range o.ctx.timers {
		cancel()
		delete(o.ctx.timers, ts)
	}
}
