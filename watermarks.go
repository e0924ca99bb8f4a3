package weir

import (
	"fmt"
	"time"

	"github.com/weirstream/weir/plan"
	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/runtime/watermark"
)

// Event time. A record's timestamp is milliseconds since 1970 (int64); a
// watermark t says no record with a timestamp at or below t will come any
// more. A WatermarkStrategy (Flink's) says how a source or an
// AssignTimestampsAndWatermarks operator stamps records and generates
// watermarks; sources generate them per split (partition) and emit the
// minimum over their active splits; every task's watermark is the minimum
// over its inputs; at the end of the input the watermark is MaxWatermark,
// so every event-time timer and window fires before the final checkpoint.

// MaxWatermark is the watermark at the end of the input.
const MaxWatermark = watermark.Max

// MinWatermark is the watermark before any is known.
const MinWatermark = watermark.Min

// NoTimestamp is the timestamp of a record that has none.
const NoTimestamp = runtime.NoTimestamp

// WatermarkOutput receives what a WatermarkGenerator decides.
type WatermarkOutput interface {
	// EmitWatermark moves the watermark to ts (a lower one is ignored).
	EmitWatermark(ts int64)
	// MarkIdle says this input has no data for now: it does not hold
	// watermarks downstream back until it emits again.
	MarkIdle()
	// MarkActive undoes MarkIdle.
	MarkActive()
}

// WatermarkGenerator generates watermarks from the records of one split
// (Flink's interface). OnEvent sees every record; OnPeriodicEmit runs every
// AutoWatermarkInterval. Both run on the task goroutine.
type WatermarkGenerator[T any] interface {
	OnEvent(event T, timestamp int64, out WatermarkOutput)
	OnPeriodicEmit(out WatermarkOutput)
}

// WatermarkStrategy says how records get timestamps and watermarks. Build
// one with ForBoundedOutOfOrderness, ForMonotonousTimestamps or
// ForGenerator, then WithTimestampAssigner and WithIdleness.
type WatermarkStrategy[T any] struct {
	newGenerator func() WatermarkGenerator[T]
	assigner     func(event T, recordTimestamp int64) int64
	idleness     time.Duration
}

// ForBoundedOutOfOrderness: records may come up to maxOutOfOrderness later
// than a record with a higher timestamp; the watermark is the largest
// timestamp seen minus maxOutOfOrderness, minus 1 ms.
func ForBoundedOutOfOrderness[T any](maxOutOfOrderness time.Duration) WatermarkStrategy[T] {
	bound := maxOutOfOrderness.Milliseconds()
	return WatermarkStrategy[T]{newGenerator: func() WatermarkGenerator[T] {
		return &boundedOutOfOrderness[T]{bound: bound, maxTS: MinWatermark + bound + 1}
	}}
}

// ForMonotonousTimestamps: timestamps only grow (no record is out of
// order); the watermark is the largest timestamp seen, minus 1 ms.
func ForMonotonousTimestamps[T any]() WatermarkStrategy[T] { return ForBoundedOutOfOrderness[T](0) }

// NoWatermarks stamps records (with WithTimestampAssigner) but generates
// no watermarks (Flink's WatermarkStrategy.noWatermarks): event-time
// timers and windows downstream fire only at the end of the input, when
// the source emits MaxWatermark.
func NoWatermarks[T any]() WatermarkStrategy[T] {
	return WatermarkStrategy[T]{newGenerator: func() WatermarkGenerator[T] { return noWatermarks[T]{} }}
}

type noWatermarks[T any] struct{}

func (noWatermarks[T]) OnEvent(T, int64, WatermarkOutput) {}
func (noWatermarks[T]) OnPeriodicEmit(WatermarkOutput)    {}

// ForGenerator uses a generator of your own, one per split.
func ForGenerator[T any](newGenerator func() WatermarkGenerator[T]) WatermarkStrategy[T] {
	return WatermarkStrategy[T]{newGenerator: newGenerator}
}

// WithTimestampAssigner sets how a record's timestamp is found: assign gets
// the record and the timestamp it already has (NoTimestamp if none).
// Without one, a record keeps the timestamp it has.
func (s WatermarkStrategy[T]) WithTimestampAssigner(assign func(event T, recordTimestamp int64) int64) WatermarkStrategy[T] {
	s.assigner = assign
	return s
}

// WithIdleness marks a split idle when it had no record for d, so that it
// does not hold the watermark back; its next record makes it active again.
func (s WatermarkStrategy[T]) WithIdleness(d time.Duration) WatermarkStrategy[T] {
	s.idleness = d
	return s
}

func (s WatermarkStrategy[T]) validate() error {
	switch {
	case s.newGenerator == nil:
		return fmt.Errorf("the watermark strategy has no generator: build it with ForBoundedOutOfOrderness, ForMonotonousTimestamps or ForGenerator")
	case s.idleness < 0:
		return fmt.Errorf("watermark idleness must not be negative, got %s", s.idleness)
	}
	return nil
}

type boundedOutOfOrderness[T any] struct {
	bound int64
	maxTS int64
}

func (g *boundedOutOfOrderness[T]) OnEvent(_ T, ts int64, _ WatermarkOutput) {
	g.maxTS = max(g.maxTS, ts)
}

func (g *boundedOutOfOrderness[T]) OnPeriodicEmit(out WatermarkOutput) {
	out.EmitWatermark(g.maxTS - g.bound - 1)
}

// AutoWatermarkInterval sets how often periodic watermark generators emit
// (default 200 ms, Flink's).
func AutoWatermarkInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("auto watermark interval must be positive, got %s", d)
		}
		c.watermarkInterval = d
		return nil
	}
}

// SplitReader is implemented by source readers of several splits
// (partitions) that want watermarks per split: ReadSplits is Read that
// also appends, for every record, the index of the split it came from;
// Splits lists the splits the reader owns now (a split that has sent no
// record yet holds the watermark back until it does, or until it is idle).
// Readers without it count as one split.
type SplitReader[T any] interface {
	ReadSplits(buf []T, splits []int) ([]T, []int, ReadStatus, error)
	Splits() []int
}

// splitWatermarks runs a strategy's generators for the splits of one
// source (or one assigner) and combines their watermarks.
type splitWatermarks[T any] struct {
	ws       WatermarkStrategy[T]
	states   map[int]*splitState[T]
	splits   *watermark.Splits
	out      any // the operator's output: watermarks go here
	lastSent int64
	idle     bool
	now      func() int64
	// clock is the time of the last periodic emission: records are timed
	// with it (reading the clock per record cost a sixth of a source's
	// time), so idleness is detected to within AutoWatermarkInterval.
	clock int64
	// last is the state of the split of the last record (records come in
	// runs of one split): the common case needs no map lookup.
	last      *splitState[T]
	lastSplit int
}

// splitState is one split's generator and output.
type splitState[T any] struct {
	gen WatermarkGenerator[T]
	// bounded is gen when it is the built-in bounded-out-of-orderness
	// generator, whose OnEvent afterRecord does inline (an interface
	// call per record cost a tenth of the watermark path), and none
	// is set when gen is noWatermarks.
	bounded *boundedOutOfOrderness[T]
	none    bool
	out     *splitOutput[T]
	// seen says the split's activity at clock is recorded: its records
	// until the next periodic emission need not tell the idleness
	// tracking again (only the periodic emission and the generator's
	// MarkIdle make a split idle, and both clear seen).
	seen bool
}

func newSplitWatermarks[T any](ws WatermarkStrategy[T], out any, now func() int64) *splitWatermarks[T] {
	return &splitWatermarks[T]{ws: ws, states: map[int]*splitState[T]{},
		splits: watermark.NewSplits(ws.idleness.Milliseconds()), out: out, lastSent: MinWatermark, now: now, clock: now()}
}

// splitOutput is the WatermarkOutput of one split's generator.
type splitOutput[T any] struct {
	s     *splitWatermarks[T]
	split int
	state *splitState[T]
}

func (o *splitOutput[T]) EmitWatermark(ts int64) {
	o.s.apply(o.s.splits.OnWatermark(o.split, ts, o.s.now()))
}
func (o *splitOutput[T]) MarkIdle() {
	o.state.seen = false
	o.s.apply(o.s.splits.OnStatus(o.split, watermark.Idle, o.s.now()))
}
func (o *splitOutput[T]) MarkActive() {
	o.s.apply(o.s.splits.OnStatus(o.split, watermark.Active, o.s.now()))
}

// split returns the state of split, created (with its generator) if new.
func (s *splitWatermarks[T]) split(split int) *splitState[T] {
	if s.last != nil && s.lastSplit == split {
		return s.last
	}
	st, ok := s.states[split]
	if !ok {
		st = &splitState[T]{gen: s.ws.newGenerator()}
		switch g := st.gen.(type) {
		case *boundedOutOfOrderness[T]:
			st.bounded = g
		case noWatermarks[T]:
			st.none = true
		}
		st.out = &splitOutput[T]{s: s, split: split, state: st}
		s.states[split] = st
		s.splits.Add(split, s.clock)
	}
	s.last, s.lastSplit = st, split
	return st
}

// onRecord stamps a record of split (returns its timestamp); the caller
// emits the record, then calls afterRecord.
func (s *splitWatermarks[T]) onRecord(r T, split int, ts int64) int64 {
	if s.ws.assigner != nil {
		ts = s.ws.assigner(r, ts)
	}
	st := s.split(split)
	if !st.seen {
		st.seen = true
		s.apply(s.splits.OnRecord(split, s.clock))
	}
	return ts
}

// emitRun stamps and emits records of one split, with the source's
// timestamp assigner (a source's records have no timestamp of their
// own), each seen by the split's generator after it went out (see
// afterRecord): the per-record work of an event-time source, in one loop.
func (s *splitWatermarks[T]) emitRun(rs []T, split int, ts *int64, out runtime.Collector[T]) {
	st := s.split(split)
	assign := s.ws.assigner
	for _, r := range rs {
		t := NoTimestamp
		if assign != nil {
			t = assign(r, NoTimestamp)
		}
		if !st.seen {
			st.seen = true
			s.apply(s.splits.OnRecord(split, s.clock))
		}
		*ts = t
		out.Collect(r)
		if b := st.bounded; b != nil {
			b.maxTS = max(b.maxTS, t)
		} else if !st.none {
			st.gen.OnEvent(r, t, st.out)
		}
	}
}

// afterRecord lets the generator of the split of the record just stamped
// and emitted see it. The record goes out first, as in Flink: a watermark
// the generator derives from the record (a punctuated one) must not
// overtake it, or it would make its own record late.
func (s *splitWatermarks[T]) afterRecord(r T, ts int64) {
	st := s.last
	if b := st.bounded; b != nil {
		b.maxTS = max(b.maxTS, ts)
		return
	}
	if !st.none {
		st.gen.OnEvent(r, ts, st.out)
	}
}

// periodic runs every generator's periodic emission and the idleness
// check.
func (s *splitWatermarks[T]) periodic() {
	s.clock = s.now()
	for _, st := range s.states {
		st.seen = false
		st.gen.OnPeriodicEmit(st.out)
	}
	s.apply(s.splits.Tick(s.clock))
}

// end emits MaxWatermark: the input ended.
func (s *splitWatermarks[T]) end() {
	s.apply(watermark.Output{Watermark: MaxWatermark, HasWatermark: true})
}

func (s *splitWatermarks[T]) apply(o watermark.Output) {
	if o.HasWatermark && o.Watermark > s.lastSent {
		if s.idle {
			s.idle = false
			runtime.ForwardStatus(s.out, false)
		}
		s.lastSent = o.Watermark
		runtime.ForwardWatermark(s.out, o.Watermark)
	}
	if o.StatusChanged && (o.Status == watermark.Idle) != s.idle {
		s.idle = o.Status == watermark.Idle
		runtime.ForwardStatus(s.out, s.idle)
	}
}

// FromSourceWithWatermarks adds a source whose records get timestamps and
// watermarks by ws (Flink's env.fromSource(source, strategy, name)):
// watermarks are generated per split of the source (see SplitReader) and
// the source emits the minimum over its active splits, every
// AutoWatermarkInterval; at the end of its input it emits MaxWatermark.
func FromSourceWithWatermarks[T any](env *Environment, src Source[T], ws WatermarkStrategy[T], name string) Stream[T] {
	s := FromSource(env, src, name)
	if err := ws.validate(); err != nil {
		env.setErr(fmt.Errorf("source %s: %w", name, err))
		return s
	}
	env.eventTime = true
	newOp := s.n.NewOperator
	s.n.NewOperator = func(subtask int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		in, op, drv, err := newOp(subtask, out)
		if err != nil {
			return nil, nil, nil, err
		}
		so := op.(*sourceOp[T])
		so.ws = &ws
		return in, op, drv, err
	}
	return s
}

// AssignTimestampsAndWatermarks stamps the records of s and generates
// watermarks by ws from here on (Flink's operator of the same name): the
// watermarks of the upstream are replaced (only the end-of-input
// MaxWatermark passes), one generator per parallel subtask.
func AssignTimestampsAndWatermarks[T any](s Stream[T], ws WatermarkStrategy[T]) Stream[T] {
	if err := ws.validate(); err != nil {
		s.env.setErr(fmt.Errorf("assign timestamps and watermarks: %w", err))
	}
	s.env.eventTime = true
	interval := &s.env.cfg.watermarkInterval
	n := addNode[T](s.env, "Timestamps/Watermarks", []plan.Input{forwardInput(s)})
	n.NewOperator = func(_ int, out any) (any, runtime.Operator, runtime.SourceDriver, error) {
		op := &assignerOp[T]{ws: ws, out: out.(runtime.Collector[T]), interval: *interval}
		return runtime.Collector[T](op), op, nil, nil
	}
	return Stream[T]{s.env, n}
}

type assignerOp[T any] struct {
	baseOp
	ws       WatermarkStrategy[T]
	out      runtime.Collector[T]
	interval time.Duration
	ts       *int64
	wms      *splitWatermarks[T]
	timers   runtime.ProcessingTimeService
}

func (o *assignerOp[T]) Open(ctx *runtime.OperatorContext) error {
	o.ts = ctx.Timestamp
	o.timers = ctx.ProcessingTime
	o.wms = newSplitWatermarks(o.ws, o.out, func() int64 { return o.timers.Now().UnixMilli() })
	o.schedule()
	return nil
}

func (o *assignerOp[T]) schedule() {
	o.timers.Schedule(o.timers.Now().Add(o.interval), func() {
		o.wms.periodic()
		o.schedule()
	})
}

func (o *assignerOp[T]) Collect(r T) {
	ts := o.wms.onRecord(r, 0, *o.ts)
	*o.ts = ts
	o.out.Collect(r)
	o.wms.afterRecord(r, ts)
}

// ProcessWatermark drops upstream watermarks: this operator generates its
// own. The end of the input passes.
func (o *assignerOp[T]) ProcessWatermark(wm int64) {
	if wm == MaxWatermark {
		o.wms.end()
	}
}

func (o *assignerOp[T]) ProcessStatus(bool) {}

// sourceWatermarks is the event-time side of a source with a watermark
// strategy.
func (o *sourceOp[T]) openWatermarks(ctx *runtime.OperatorContext) {
	if o.ws == nil {
		return
	}
	o.ts = ctx.Timestamp
	timers := ctx.ProcessingTime
	o.wms = newSplitWatermarks(*o.ws, o.out, func() int64 { return timers.Now().UnixMilli() })
	if sr, ok := o.reader.(SplitReader[T]); ok {
		for _, split := range sr.Splits() {
			o.wms.split(split)
		}
	}
	var tick func()
	tick = func() {
		o.wms.periodic()
		timers.Schedule(timers.Now().Add(o.interval), tick)
	}
	timers.Schedule(timers.Now().Add(o.interval), tick)
}
