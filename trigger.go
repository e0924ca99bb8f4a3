package weir

import (
	"fmt"
	"time"
)

// TriggerResult is what a trigger decides for a window.
type TriggerResult uint8

const (
	// Continue does nothing.
	Continue TriggerResult = iota
	// Fire emits the window's result and keeps its contents.
	Fire
	// Purge drops the window's contents without emitting.
	Purge
	// FireAndPurge emits the window's result, then drops its contents.
	FireAndPurge
)

func (r TriggerResult) fires() bool  { return r == Fire || r == FireAndPurge }
func (r TriggerResult) purges() bool { return r == Purge || r == FireAndPurge }

// Trigger decides when a window emits (Flink's Trigger). Its methods run
// on the subtask's goroutine with the window's key current; ctx gives
// timers and small per-window values, all keyed state (checkpointed,
// restored and rescaled with the window). Implement it for custom
// triggers; the package has EventTimeTrigger, ProcessingTimeTrigger,
// CountTrigger, ContinuousEventTimeTrigger,
// ContinuousProcessingTimeTrigger, PurgingTrigger and NeverTrigger.
type Trigger interface {
	// OnElement is called for every record added to w, with its timestamp
	// (NoTimestamp in processing time).
	OnElement(ctx TriggerContext, ts int64, w TimeWindow) TriggerResult
	// OnEventTime is called when an event-time timer ctx registered for w
	// fires.
	OnEventTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult
	// OnProcessingTime is called when a processing-time timer ctx
	// registered for w fires.
	OnProcessingTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult
	// OnMerge is called when the windows merged (session windows) became
	// w: the trigger registers w's timers and combines the merged windows'
	// values (ctx.ValueOf). The merged windows' timers and values are
	// cleared before OnMerge with Clear.
	OnMerge(ctx TriggerContext, w TimeWindow, merged []TimeWindow)
	// Clear deletes the timers and values the trigger holds for w; it is
	// called when w is purged for good (its cleanup time passed).
	Clear(ctx TriggerContext, w TimeWindow)
}

// TriggerContext is what a trigger may do, scoped to the key and window it
// is called for.
type TriggerContext interface {
	CurrentWatermark() int64
	CurrentProcessingTime() int64
	RegisterEventTimeTimer(ts int64)
	DeleteEventTimeTimer(ts int64)
	RegisterProcessingTimeTimer(ts int64)
	DeleteProcessingTimeTimer(ts int64)
	// Value, SetValue and DeleteValue keep small named values per window.
	Value(name string) (int64, bool)
	SetValue(name string, v int64)
	DeleteValue(name string)
	// ValueOf reads the value of another window of the key (the merged
	// windows, in OnMerge).
	ValueOf(w TimeWindow, name string) (int64, bool)
}

type eventTimeTrigger struct{}

// EventTimeTrigger fires a window once, when the watermark passes its end,
// and again for every late record within the allowed lateness (the
// default trigger of event-time windows).
func EventTimeTrigger() Trigger { return eventTimeTrigger{} }

func (eventTimeTrigger) OnElement(ctx TriggerContext, _ int64, w TimeWindow) TriggerResult {
	if w.MaxTimestamp() <= ctx.CurrentWatermark() {
		return Fire // a late record in the allowed lateness
	}
	ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	return Continue
}

func (eventTimeTrigger) OnEventTime(_ TriggerContext, t int64, w TimeWindow) TriggerResult {
	if t == w.MaxTimestamp() {
		return Fire
	}
	return Continue
}

func (eventTimeTrigger) OnProcessingTime(TriggerContext, int64, TimeWindow) TriggerResult {
	return Continue
}

func (eventTimeTrigger) OnMerge(ctx TriggerContext, w TimeWindow, _ []TimeWindow) {
	if w.MaxTimestamp() > ctx.CurrentWatermark() {
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	}
}

func (eventTimeTrigger) Clear(ctx TriggerContext, w TimeWindow) {
	ctx.DeleteEventTimeTimer(w.MaxTimestamp())
}

type processingTimeTrigger struct{}

// ProcessingTimeTrigger fires a window when the clock passes its end (the
// default trigger of processing-time windows).
func ProcessingTimeTrigger() Trigger { return processingTimeTrigger{} }

func (processingTimeTrigger) OnElement(ctx TriggerContext, _ int64, w TimeWindow) TriggerResult {
	ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	return Continue
}

func (processingTimeTrigger) OnEventTime(TriggerContext, int64, TimeWindow) TriggerResult {
	return Continue
}

func (processingTimeTrigger) OnProcessingTime(_ TriggerContext, t int64, w TimeWindow) TriggerResult {
	if t == w.MaxTimestamp() {
		return Fire
	}
	return Continue
}

func (processingTimeTrigger) OnMerge(ctx TriggerContext, w TimeWindow, _ []TimeWindow) {
	if w.MaxTimestamp() > ctx.CurrentProcessingTime() {
		ctx.RegisterProcessingTimeTimer(w.MaxTimestamp())
	}
}

func (processingTimeTrigger) Clear(ctx TriggerContext, w TimeWindow) {
	ctx.DeleteProcessingTimeTimer(w.MaxTimestamp())
}

type countTrigger struct{ n int64 }

// CountTrigger fires a window at every n-th record added to it.
func CountTrigger(n int64) Trigger { return countTrigger{n: n} }

func (c countTrigger) OnElement(ctx TriggerContext, _ int64, _ TimeWindow) TriggerResult {
	v, _ := ctx.Value("count")
	v++
	if v >= c.n {
		ctx.DeleteValue("count")
		return Fire
	}
	ctx.SetValue("count", v)
	return Continue
}

func (countTrigger) OnEventTime(TriggerContext, int64, TimeWindow) TriggerResult { return Continue }
func (countTrigger) OnProcessingTime(TriggerContext, int64, TimeWindow) TriggerResult {
	return Continue
}

func (c countTrigger) OnMerge(ctx TriggerContext, _ TimeWindow, merged []TimeWindow) {
	var sum int64
	for _, m := range merged {
		v, _ := ctx.ValueOf(m, "count")
		sum += v
	}
	if sum > 0 {
		ctx.SetValue("count", sum)
	}
}

func (countTrigger) Clear(ctx TriggerContext, _ TimeWindow) { ctx.DeleteValue("count") }

type neverTrigger struct{}

// NeverTrigger never fires (the default trigger of GlobalWindows).
func NeverTrigger() Trigger { return neverTrigger{} }

func (neverTrigger) OnElement(TriggerContext, int64, TimeWindow) TriggerResult   { return Continue }
func (neverTrigger) OnEventTime(TriggerContext, int64, TimeWindow) TriggerResult { return Continue }
func (neverTrigger) OnProcessingTime(TriggerContext, int64, TimeWindow) TriggerResult {
	return Continue
}
func (neverTrigger) OnMerge(TriggerContext, TimeWindow, []TimeWindow) {}
func (neverTrigger) Clear(TriggerContext, TimeWindow)                 {}

type purgingTrigger struct{ t Trigger }

// PurgingTrigger turns every Fire of t into FireAndPurge: each firing
// emits only what arrived since the previous one.
func PurgingTrigger(t Trigger) Trigger { return purgingTrigger{t: t} }

func purge(r TriggerResult) TriggerResult {
	if r == Fire {
		return FireAndPurge
	}
	return r
}

func (p purgingTrigger) OnElement(ctx TriggerContext, ts int64, w TimeWindow) TriggerResult {
	return purge(p.t.OnElement(ctx, ts, w))
}
func (p purgingTrigger) OnEventTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult {
	return purge(p.t.OnEventTime(ctx, t, w))
}
func (p purgingTrigger) OnProcessingTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult {
	return purge(p.t.OnProcessingTime(ctx, t, w))
}
func (p purgingTrigger) OnMerge(ctx TriggerContext, w TimeWindow, merged []TimeWindow) {
	p.t.OnMerge(ctx, w, merged)
}
func (p purgingTrigger) Clear(ctx TriggerContext, w TimeWindow) { p.t.Clear(ctx, w) }

type continuousTrigger struct {
	interval  int64
	eventTime bool
}

// ContinuousEventTimeTrigger fires a window every interval of event time
// (as the watermark passes each multiple of interval) and at its end: the
// running result of a long window.
func ContinuousEventTimeTrigger(interval time.Duration) Trigger {
	return continuousTrigger{interval: interval.Milliseconds(), eventTime: true}
}

// ContinuousProcessingTimeTrigger fires a window every interval of
// processing time.
func ContinuousProcessingTimeTrigger(interval time.Duration) Trigger {
	return continuousTrigger{interval: interval.Milliseconds()}
}

const fireTimeValue = "fire-time"

func (c continuousTrigger) register(ctx TriggerContext, at int64) {
	if c.eventTime {
		ctx.RegisterEventTimeTimer(at)
	} else {
		ctx.RegisterProcessingTimeTimer(at)
	}
}

func (c continuousTrigger) OnElement(ctx TriggerContext, ts int64, w TimeWindow) TriggerResult {
	if c.eventTime {
		if w.MaxTimestamp() <= ctx.CurrentWatermark() {
			return Fire
		}
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	} else {
		ts = ctx.CurrentProcessingTime()
	}
	if _, ok := ctx.Value(fireTimeValue); !ok {
		next := windowStart(ts, 0, c.interval) + c.interval
		ctx.SetValue(fireTimeValue, next)
		c.register(ctx, next)
	}
	return Continue
}

func (c continuousTrigger) onTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult {
	if c.eventTime && t == w.MaxTimestamp() {
		return Fire
	}
	if next, ok := ctx.Value(fireTimeValue); ok && next == t {
		ctx.SetValue(fireTimeValue, t+c.interval)
		c.register(ctx, t+c.interval)
		return Fire
	}
	return Continue
}

func (c continuousTrigger) OnEventTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult {
	if !c.eventTime {
		return Continue
	}
	return c.onTime(ctx, t, w)
}

func (c continuousTrigger) OnProcessingTime(ctx TriggerContext, t int64, w TimeWindow) TriggerResult {
	if c.eventTime {
		return Continue
	}
	return c.onTime(ctx, t, w)
}

func (c continuousTrigger) OnMerge(ctx TriggerContext, w TimeWindow, merged []TimeWindow) {
	if c.eventTime && w.MaxTimestamp() > ctx.CurrentWatermark() {
		ctx.RegisterEventTimeTimer(w.MaxTimestamp())
	}
	var next int64
	found := false
	for _, m := range merged {
		if v, ok := ctx.ValueOf(m, fireTimeValue); ok && (!found || v < next) {
			next, found = v, true
		}
	}
	if found {
		ctx.SetValue(fireTimeValue, next)
		c.register(ctx, next)
	}
}

func (c continuousTrigger) Clear(ctx TriggerContext, w TimeWindow) {
	if next, ok := ctx.Value(fireTimeValue); ok {
		if c.eventTime {
			ctx.DeleteEventTimeTimer(next)
		} else {
			ctx.DeleteProcessingTimeTimer(next)
		}
		ctx.DeleteValue(fireTimeValue)
	}
	if c.eventTime {
		ctx.DeleteEventTimeTimer(w.MaxTimestamp())
	}
}

func (c continuousTrigger) validate() error {
	if c.interval <= 0 {
		return fmt.Errorf("a continuous trigger needs an interval of at least 1ms, got %dms", c.interval)
	}
	return nil
}
