package weir

import (
	"fmt"
	"math"
	"slices"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// The window operator is a keyed logic with timers. Per key it keeps, as
// map states keyed by window: the contents (an accumulator per window, or
// the records per window), the triggers' values, and for merging
// assigners the key's active windows. A window's timers (the trigger's and
// the cleanup timer at cleanupTime) are keyed timers whose namespace is the
// encoded window.

// windowContents is what a window keeps and emits: an accumulator per
// window (reduce, aggregate) or the records (process).
type windowContents[K comparable, T, OUT any] interface {
	open(ctx *KeyedContext[K]) error
	// add adds x to w's contents and says whether w had contents before.
	add(w TimeWindow, x T) (had bool, err error)
	// emit hands w's contents, if any, to the window function.
	emit(ctx *WindowContext[K], w TimeWindow) error
	clear(w TimeWindow)
	// merge moves the contents of from into into (session windows).
	merge(into TimeWindow, from []TimeWindow) error
	// canMerge says whether merge works (an aggregate needs Merge).
	canMerge() error
	user() any
}

type windowLogic[K comparable, T, OUT any] struct {
	spec     windowSpec
	contents windowContents[K, T, OUT]
	ctx      *KeyedContext[K]
	tctx     triggerCtx[K]
	wctx     WindowContext[K]
	trig     MapState[trigKey, int64]
	active   ValueState[[]TimeWindow] // merging assigners: the key's windows
	windows  []TimeWindow
	merged   []TimeWindow
	// timersOnce is true when a window's timers are registered by its
	// first record and stay until it is cleaned up: a built-in event-time
	// or processing-time trigger of a non-merging assigner. The operator
	// then skips the trigger and the cleanup timer for the records after
	// a window's first, which find their timers registered already.
	timersOnce bool
	// dropped counts the late records dropped (no side output).
	dropped int64
}

func (l *windowLogic[K, T, OUT]) operator() any    { return l.contents.user() }
func (l *windowLogic[K, T, OUT]) usesTimers() bool { return true }

func (l *windowLogic[K, T, OUT]) open(ctx *KeyedContext[K]) error {
	l.ctx = ctx
	l.wctx = WindowContext[K]{keyed: ctx}
	var err error
	if l.trig, err = state.GetMapState[K, trigKey, int64](ctx.backend, "window-trigger", trigKeyCodec{}, state.CodecFor[int64]()); err != nil {
		return ctx.registerError(err)
	}
	if l.spec.assigner.IsMerging() {
		v, err := state.GetValueState[K, []TimeWindow](ctx.backend, "window-active", windowListCodec{})
		if err != nil {
			return ctx.registerError(err)
		}
		l.active = v
	}
	l.tctx = triggerCtx[K]{l: &windowLogicBase[K]{ctx: ctx, trig: l.trig}}
	switch l.spec.trigger.(type) {
	case eventTimeTrigger, processingTimeTrigger:
		l.timersOnce = !l.spec.assigner.IsMerging()
	}
	if err := l.contents.open(ctx); err != nil {
		return err
	}
	if o, ok := l.contents.user().(KeyedOpener[K]); ok {
		return o.Open(ctx)
	}
	return nil
}

func (l *windowLogic[K, T, OUT]) process(ctx *KeyedContext[K], in T) error {
	a := l.spec.assigner
	ts, hasTS := ctx.Timestamp()
	var now int64
	if a.IsEventTime() {
		if !hasTS {
			return fmt.Errorf("operator %s: a record has no timestamp, which event-time windows need: give the source a WatermarkStrategy with a timestamp assigner, or use AssignTimestampsAndWatermarks", ctx.op.OperatorName)
		}
	} else {
		now = ctx.CurrentProcessingTime()
		ts = NoTimestamp
	}
	l.windows = a.AssignWindows(ts, now, l.windows[:0])
	if a.IsMerging() {
		if err := l.mergeWindows(); err != nil {
			return err
		}
	}
	skipped := true
	for _, w := range l.windows {
		if l.isLate(w) {
			continue
		}
		skipped = false
		had, err := l.contents.add(w, in)
		if err != nil {
			return err
		}
		if had && l.timersOnce && (!a.IsEventTime() || w.MaxTimestamp() > *ctx.wm) {
			// The window's first record registered its trigger and
			// cleanup timers, which have not fired: the watermark (or,
			// in processing time, the cleanup that fires with the
			// trigger) would have cleared the contents.
			continue
		}
		l.tctx.w = w
		if err := l.act(l.spec.trigger.OnElement(&l.tctx, ts, w), w); err != nil {
			return err
		}
		l.registerCleanup(w)
	}
	if skipped && a.IsEventTime() && ts+l.spec.lateness <= *ctx.wm {
		if l.spec.lateTag != "" {
			emitSide(ctx.sides, ctx.op, OutputTag[T]{id: l.spec.lateTag}, in)
		} else {
			l.dropped++
		}
	}
	return nil
}

// isLate says whether w's cleanup time passed: records for it are late.
func (l *windowLogic[K, T, OUT]) isLate(w TimeWindow) bool {
	return l.spec.eventTime && l.spec.cleanupTime(w) <= *l.ctx.wm
}

func (l *windowLogic[K, T, OUT]) registerCleanup(w TimeWindow) {
	t := l.spec.cleanupTime(w)
	if t == math.MaxInt64 {
		return
	}
	if l.spec.assigner.IsEventTime() {
		l.ctx.timers.event.Add(t, l.tctx.l.ns(w))
	} else {
		l.ctx.timers.addProcessingTime(t, l.tctx.l.ns(w))
	}
}

func (l *windowLogic[K, T, OUT]) deleteCleanup(w TimeWindow) {
	t := l.spec.cleanupTime(w)
	if l.spec.assigner.IsEventTime() {
		l.ctx.timers.event.Delete(t, l.tctx.l.ns(w))
	} else {
		l.ctx.timers.proc.Delete(t, l.tctx.l.ns(w))
	}
}

// mergeWindows merges the new window (session windows assign one) with the
// key's active windows it intersects, moving their contents, timers and
// trigger values to the merged window, which replaces the new window in
// l.windows. A merged window that is already late is left alone (the
// record is late).
func (l *windowLogic[K, T, OUT]) mergeWindows() error {
	active, _ := l.active.Value()
	for i, nw := range l.windows {
		res := nw
		l.merged = l.merged[:0]
		for changed := true; changed; {
			changed = false
			for _, a := range active {
				if !slices.Contains(l.merged, a) && a.Intersects(res) {
					res = res.Cover(a)
					l.merged = append(l.merged, a)
					changed = true
				}
			}
		}
		l.windows[i] = res
		if len(l.merged) == 1 && l.merged[0] == res {
			continue // inside an active window
		}
		if l.isLate(res) {
			continue
		}
		if len(l.merged) > 0 {
			if err := l.contents.merge(res, l.merged); err != nil {
				return err
			}
			l.tctx.w = res
			l.spec.trigger.OnMerge(&l.tctx, res, l.merged)
			for _, m := range l.merged {
				l.tctx.w = m
				l.spec.trigger.Clear(&l.tctx, m)
				l.deleteCleanup(m)
			}
		}
		next := make([]TimeWindow, 0, len(active)+1)
		for _, a := range active {
			if !slices.Contains(l.merged, a) {
				next = append(next, a)
			}
		}
		active = append(next, res)
		l.active.Update(active)
	}
	return nil
}

func (l *windowLogic[K, T, OUT]) onTimer(ctx *KeyedContext[K], tm state.Timer[K]) error {
	w, err := windowOfNamespace(tm.Namespace)
	if err != nil {
		return err
	}
	if l.active != nil {
		active, _ := l.active.Value()
		if !slices.Contains(active, w) {
			return nil // the window merged into another or was purged
		}
	}
	l.tctx.w = w
	var r TriggerResult
	if ctx.domain == EventTime {
		r = l.spec.trigger.OnEventTime(&l.tctx, tm.Timestamp, w)
	} else {
		r = l.spec.trigger.OnProcessingTime(&l.tctx, tm.Timestamp, w)
	}
	if err := l.act(r, w); err != nil {
		return err
	}
	cleanupDomain := ProcessingTime
	if l.spec.assigner.IsEventTime() {
		cleanupDomain = EventTime
	}
	if ctx.domain == cleanupDomain && tm.Timestamp == l.spec.cleanupTime(w) {
		l.clearAll(w)
	}
	return nil
}

// act carries out a trigger's result for w.
func (l *windowLogic[K, T, OUT]) act(r TriggerResult, w TimeWindow) error {
	if r.fires() {
		slot := l.ctx.op.Timestamp
		var saved int64
		if slot != nil {
			saved = *slot
			*slot = w.MaxTimestamp()
		}
		l.wctx.window = w
		err := l.contents.emit(&l.wctx, w)
		if slot != nil {
			*slot = saved
		}
		if err != nil {
			return err
		}
	}
	if r.purges() {
		l.contents.clear(w)
	}
	return nil
}

// clearAll drops everything the key holds for w.
func (l *windowLogic[K, T, OUT]) clearAll(w TimeWindow) {
	l.contents.clear(w)
	l.tctx.w = w
	l.spec.trigger.Clear(&l.tctx, w)
	if l.active != nil {
		active, _ := l.active.Value()
		if i := slices.Index(active, w); i >= 0 {
			next := slices.Delete(slices.Clone(active), i, i+1)
			if len(next) == 0 {
				l.active.Clear()
			} else {
				l.active.Update(next)
			}
		}
	}
}

// windowLogicBase is the part of the window operator triggers reach.
type windowLogicBase[K comparable] struct {
	ctx  *KeyedContext[K]
	trig MapState[trigKey, int64]
	// lastW and lastNS cache the namespace of the last window a timer was
	// registered for: consecutive records mostly fall in the same window.
	lastW  TimeWindow
	lastNS string
}

// ns is the timer namespace of w.
func (b *windowLogicBase[K]) ns(w TimeWindow) string {
	if w != b.lastW || b.lastNS == "" {
		b.lastW, b.lastNS = w, windowNamespace(w)
	}
	return b.lastNS
}

// triggerCtx is the TriggerContext of the window w of the current key.
type triggerCtx[K comparable] struct {
	l *windowLogicBase[K]
	w TimeWindow
}

func (c *triggerCtx[K]) CurrentWatermark() int64      { return *c.l.ctx.wm }
func (c *triggerCtx[K]) CurrentProcessingTime() int64 { return c.l.ctx.CurrentProcessingTime() }
func (c *triggerCtx[K]) RegisterEventTimeTimer(ts int64) {
	c.l.ctx.timers.event.Add(ts, c.l.ns(c.w))
}
func (c *triggerCtx[K]) DeleteEventTimeTimer(ts int64) {
	c.l.ctx.timers.event.Delete(ts, c.l.ns(c.w))
}
func (c *triggerCtx[K]) RegisterProcessingTimeTimer(ts int64) {
	c.l.ctx.timers.addProcessingTime(ts, c.l.ns(c.w))
}
func (c *triggerCtx[K]) DeleteProcessingTimeTimer(ts int64) {
	c.l.ctx.timers.proc.Delete(ts, c.l.ns(c.w))
}
func (c *triggerCtx[K]) Value(name string) (int64, bool) { return c.l.trig.Get(trigKey{c.w, name}) }
func (c *triggerCtx[K]) SetValue(name string, v int64)   { c.l.trig.Put(trigKey{c.w, name}, v) }
func (c *triggerCtx[K]) DeleteValue(name string)         { c.l.trig.Remove(trigKey{c.w, name}) }
func (c *triggerCtx[K]) ValueOf(w TimeWindow, name string) (int64, bool) {
	return c.l.trig.Get(trigKey{w, name})
}

// reduceContents keeps the reduction of each window's records.
type reduceContents[K comparable, T any] struct {
	f   func(a, b T) T
	out runtime.Collector[T]
	acc MapState[TimeWindow, T]
}

func (c *reduceContents[K, T]) open(ctx *KeyedContext[K]) (err error) {
	c.acc, err = state.GetMapState[K, TimeWindow, T](ctx.backend, "window-contents", windowCodec{}, state.CodecFor[T]())
	return ctx.registerError(err)
}

func (c *reduceContents[K, T]) add(w TimeWindow, x T) (bool, error) {
	a, ok := c.acc.Get(w)
	if ok {
		x = c.f(a, x)
	}
	c.acc.Put(w, x)
	return ok, nil
}

func (c *reduceContents[K, T]) emit(_ *WindowContext[K], w TimeWindow) error {
	if a, ok := c.acc.Get(w); ok {
		c.out.Collect(a)
	}
	return nil
}

func (c *reduceContents[K, T]) clear(w TimeWindow) { c.acc.Remove(w) }

func (c *reduceContents[K, T]) merge(into TimeWindow, from []TimeWindow) error {
	mergeAccumulators(c.acc, into, from, c.f)
	return nil
}

// mergeAccumulators combines the accumulators of from into into's with
// combine, and removes from's.
func mergeAccumulators[A any](m MapState[TimeWindow, A], into TimeWindow, from []TimeWindow, combine func(a, b A) A) {
	acc, have := m.Get(into)
	for _, w := range from {
		if w == into {
			continue
		}
		if a, ok := m.Get(w); ok {
			if have {
				acc = combine(acc, a)
			} else {
				acc, have = a, true
			}
			m.Remove(w)
		}
	}
	if have {
		m.Put(into, acc)
	}
}

func (c *reduceContents[K, T]) canMerge() error { return nil }
func (c *reduceContents[K, T]) user() any       { return c.f }

// aggContents keeps an accumulator per window.
type aggContents[K comparable, T, ACC, V, OUT any] struct {
	agg     Aggregator[T, ACC, V]
	mergeFn func(a, b ACC) ACC // nil: the aggregator cannot merge
	final   func(ctx *WindowContext[K], v V, out runtime.Collector[OUT]) error
	out     runtime.Collector[OUT]
	acc     MapState[TimeWindow, ACC]
	user_   any
}

func newAggContents[K comparable, T, ACC, V, OUT any](agg Aggregator[T, ACC, V], final func(*WindowContext[K], V, runtime.Collector[OUT]) error, out runtime.Collector[OUT]) *aggContents[K, T, ACC, V, OUT] {
	c := &aggContents[K, T, ACC, V, OUT]{agg: agg, final: final, out: out, user_: agg}
	if m, ok := agg.(MergingAggregator[T, ACC, V]); ok {
		c.mergeFn = m.Merge
	}
	return c
}

func (c *aggContents[K, T, ACC, V, OUT]) open(ctx *KeyedContext[K]) (err error) {
	c.acc, err = state.GetMapState[K, TimeWindow, ACC](ctx.backend, "window-contents", windowCodec{}, state.CodecFor[ACC]())
	return ctx.registerError(err)
}

func (c *aggContents[K, T, ACC, V, OUT]) add(w TimeWindow, x T) (bool, error) {
	a, ok := c.acc.Get(w)
	if !ok {
		a = c.agg.CreateAccumulator()
	}
	c.acc.Put(w, c.agg.Add(x, a))
	return ok, nil
}

func (c *aggContents[K, T, ACC, V, OUT]) emit(ctx *WindowContext[K], w TimeWindow) error {
	if a, ok := c.acc.Get(w); ok {
		return c.final(ctx, c.agg.Result(a), c.out)
	}
	return nil
}

func (c *aggContents[K, T, ACC, V, OUT]) clear(w TimeWindow) { c.acc.Remove(w) }

func (c *aggContents[K, T, ACC, V, OUT]) merge(into TimeWindow, from []TimeWindow) error {
	mergeAccumulators(c.acc, into, from, c.mergeFn)
	return nil
}

func (c *aggContents[K, T, ACC, V, OUT]) canMerge() error {
	if c.mergeFn == nil {
		return fmt.Errorf("the aggregator %T has no Merge(a, b ACC) ACC (weir.MergingAggregator)", c.agg)
	}
	return nil
}

func (c *aggContents[K, T, ACC, V, OUT]) user() any { return c.user_ }

// bufferContents keeps each window's records, numbered in arrival order,
// and the next number per window.
type bufferContents[K comparable, T, OUT any] struct {
	fn    ProcessWindowFunction[K, T, OUT]
	out   runtime.Collector[OUT]
	elems MapState[bufKey, T]
	next  MapState[TimeWindow, uint64]
	sort  []bufEntry[T]
	flat  []T
}

type bufEntry[T any] struct {
	seq uint64
	v   T
}

func (c *bufferContents[K, T, OUT]) open(ctx *KeyedContext[K]) (err error) {
	if c.elems, err = state.GetMapState[K, bufKey, T](ctx.backend, "window-contents", bufKeyCodec{}, state.CodecFor[T]()); err != nil {
		return ctx.registerError(err)
	}
	c.next, err = state.GetMapState[K, TimeWindow, uint64](ctx.backend, "window-sizes", windowCodec{}, state.CodecFor[uint64]())
	return ctx.registerError(err)
}

func (c *bufferContents[K, T, OUT]) add(w TimeWindow, x T) (bool, error) {
	n, ok := c.next.Get(w)
	c.elems.Put(bufKey{W: w, Seq: n}, x)
	c.next.Put(w, n+1)
	return ok, nil
}

// collect gathers w's records in arrival order into c.flat.
func (c *bufferContents[K, T, OUT]) collect(w TimeWindow) {
	c.sort = c.sort[:0]
	for k, v := range c.elems.All() {
		if k.W == w {
			c.sort = append(c.sort, bufEntry[T]{k.Seq, v})
		}
	}
	slices.SortFunc(c.sort, func(a, b bufEntry[T]) int { return cmpUint64(a.seq, b.seq) })
	c.flat = c.flat[:0]
	for _, e := range c.sort {
		c.flat = append(c.flat, e.v)
	}
	clear(c.sort)
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *bufferContents[K, T, OUT]) emit(ctx *WindowContext[K], w TimeWindow) error {
	if _, ok := c.next.Get(w); !ok {
		return nil
	}
	c.collect(w)
	if len(c.flat) == 0 {
		return nil
	}
	err := c.fn.Process(ctx, c.flat, c.out)
	clear(c.flat)
	return err
}

func (c *bufferContents[K, T, OUT]) clear(w TimeWindow) {
	n, ok := c.next.Get(w)
	if !ok {
		return
	}
	if c.onlyWindow() {
		c.elems.Clear()
	} else {
		for i := range n {
			c.elems.Remove(bufKey{W: w, Seq: i})
		}
	}
	c.next.Remove(w)
}

// onlyWindow reports whether the key has records in one window only.
func (c *bufferContents[K, T, OUT]) onlyWindow() bool {
	n := 0
	for range c.next.Keys() {
		if n++; n > 1 {
			return false
		}
	}
	return n == 1
}

func (c *bufferContents[K, T, OUT]) merge(into TimeWindow, from []TimeWindow) error {
	n, _ := c.next.Get(into)
	for _, w := range from {
		if w == into {
			continue
		}
		m, ok := c.next.Get(w)
		if !ok {
			continue
		}
		for i := range m {
			k := bufKey{W: w, Seq: i}
			if v, ok := c.elems.Get(k); ok {
				c.elems.Put(bufKey{W: into, Seq: n}, v)
				c.elems.Remove(k)
				n++
			}
		}
		c.next.Remove(w)
	}
	if n > 0 {
		c.next.Put(into, n)
	}
	return nil
}

func (c *bufferContents[K, T, OUT]) canMerge() error { return nil }
func (c *bufferContents[K, T, OUT]) user() any       { return c.fn }
