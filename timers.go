package weir

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirstream/weir/state"
)

// TimeDomain says which clock a timer follows.
type TimeDomain uint8

const (
	// EventTime timers fire when the operator's watermark passes them.
	EventTime TimeDomain = iota + 1
	// ProcessingTime timers fire when the machine's clock passes them.
	ProcessingTime
)

func (d TimeDomain) String() string {
	switch d {
	case EventTime:
		return "event-time"
	case ProcessingTime:
		return "processing-time"
	}
	return "none"
}

// KeyedTimerFunction is implemented by keyed process functions that use
// timers: OnTimer is called for every timer the function registered (with
// the KeyedContext's Register*Timer methods) once its time has come, with
// the timer's key as the current key, so keyed state reads and writes are
// the key's. ctx.TimeDomain says which kind of timer fired. Records
// emitted by an event-time timer carry its timestamp; records emitted by a
// processing-time timer carry none.
//
// OnTimer never runs concurrently with ProcessElement: both run on the
// subtask's goroutine. Timers are keyed state: they are checkpointed,
// restored and redistributed with their key on rescale.
type KeyedTimerFunction[K comparable, OUT any] interface {
	OnTimer(ctx *KeyedContext[K], ts int64, out Collector[OUT]) error
}

// KeyedFinisher is implemented by keyed process functions that act when
// their input really ends (a bounded source reached its end; not when the
// job is stopped with a savepoint): Finish runs once per subtask, after
// every record and after the maximum watermark fired every event-time
// timer, and before the final checkpoint, so what it emits reaches
// exactly-once sinks. There is no current key: state reads in Finish see
// the last key's state, so use it to emit what the function itself holds.
type KeyedFinisher[K comparable, OUT any] interface {
	Finish(ctx *KeyedContext[K], out Collector[OUT]) error
}

// errNoTimers is the error of a timer registration in a function without
// OnTimer.
var errNoTimers = errors.New("the function registers timers but does not implement OnTimer (weir.KeyedTimerFunction)")

// TimeDomain is the time domain of the timer being fired in OnTimer; 0
// while processing a record.
func (c *KeyedContext[K]) TimeDomain() TimeDomain { return c.domain }

// CurrentProcessingTime is the processing time in milliseconds since 1970.
func (c *KeyedContext[K]) CurrentProcessingTime() int64 {
	if c.op.ProcessingTime != nil {
		return c.op.ProcessingTime.Now().UnixMilli()
	}
	return time.Now().UnixMilli()
}

// RegisterEventTimeTimer registers a timer for the current key that fires
// when the watermark reaches ts (milliseconds). Registering the same
// timestamp twice for a key gives one timer. A timer at or below the
// current watermark fires with the next watermark.
func (c *KeyedContext[K]) RegisterEventTimeTimer(ts int64) {
	if c.timers == nil {
		c.op.Fail(c.timerError())
		return
	}
	c.timers.event.Add(ts, "")
}

// DeleteEventTimeTimer deletes the current key's event-time timer at ts,
// if there is one.
func (c *KeyedContext[K]) DeleteEventTimeTimer(ts int64) {
	if c.timers != nil {
		c.timers.event.Delete(ts, "")
	}
}

// RegisterProcessingTimeTimer registers a timer for the current key that
// fires when the processing time reaches ts (milliseconds since 1970).
func (c *KeyedContext[K]) RegisterProcessingTimeTimer(ts int64) {
	if c.timers == nil {
		c.op.Fail(c.timerError())
		return
	}
	c.timers.addProcessingTime(ts, "")
}

// DeleteProcessingTimeTimer deletes the current key's processing-time
// timer at ts, if there is one.
func (c *KeyedContext[K]) DeleteProcessingTimeTimer(ts int64) {
	if c.timers != nil {
		c.timers.proc.Delete(ts, "")
	}
}

func (c *KeyedContext[K]) timerError() error {
	return fmt.Errorf("operator %s (uid %q): %w", c.op.OperatorName, c.op.OperatorUID, errNoTimers)
}

// keyedTimers is a keyed operator's timer service: two timer queues of its
// keyed backend (event time, processing time) and the processing-time
// callback armed at the earliest processing-time timer.
type keyedTimers[K comparable] struct {
	ctx    *KeyedContext[K]
	hash   state.HashFunc[K]
	logic  timerLogic[K]
	event  state.TimerQueue[K]
	proc   state.TimerQueue[K]
	armed  int64 // the processing time the callback is armed at; MaxInt64: none
	cancel func()
}

// Timer queue names: keyed state of kind timers in the operator's
// checkpoints.
const (
	eventTimersName = "_timers/event"
	procTimersName  = "_timers/processing"
)

func newKeyedTimers[K comparable](ctx *KeyedContext[K], hash state.HashFunc[K], logic timerLogic[K]) (*keyedTimers[K], error) {
	ts, ok := ctx.backend.(state.TimerService[K])
	if !ok {
		return nil, fmt.Errorf("the keyed state backend %T keeps no timers", ctx.backend)
	}
	ev, err := ts.TimerQueue(eventTimersName)
	if err != nil {
		return nil, err
	}
	pr, err := ts.TimerQueue(procTimersName)
	if err != nil {
		return nil, err
	}
	return &keyedTimers[K]{ctx: ctx, hash: hash, logic: logic, event: ev, proc: pr, armed: math.MaxInt64}, nil
}

// fireEventTime fires, in timestamp order, every event-time timer at or
// below wm. Timers a timer registers at or below wm fire too.
func (t *keyedTimers[K]) fireEventTime(wm int64) error {
	return t.fire(t.event, wm, EventTime)
}

func (t *keyedTimers[K]) fire(q state.TimerQueue[K], limit int64, d TimeDomain) error {
	slot := t.ctx.op.Timestamp
	var saved int64
	if slot != nil {
		saved = *slot
	}
	defer func() {
		t.ctx.domain = 0
		if slot != nil {
			*slot = saved
		}
	}()
	for {
		tm, ok := q.Poll(limit)
		if !ok {
			return nil
		}
		t.ctx.backend.SetCurrentKeyHashed(tm.Key, t.hash(tm.Key))
		t.ctx.domain = d
		if slot != nil {
			if d == EventTime {
				*slot = tm.Timestamp
			} else {
				*slot = NoTimestamp
			}
		}
		if err := t.logic.onTimer(t.ctx, tm); err != nil {
			return fmt.Errorf("operator %s: %s timer at %d: %w", t.ctx.op.OperatorName, d, tm.Timestamp, err)
		}
	}
}

// addProcessingTime registers a processing-time timer for the current key
// and arms the callback if it is now the earliest.
func (t *keyedTimers[K]) addProcessingTime(ts int64, ns string) {
	t.proc.Add(ts, ns)
	if ts < t.armed {
		t.scheduleProcessingTime()
	}
}

// scheduleProcessingTime arms the callback at the earliest processing-time
// timer (restored timers included).
func (t *keyedTimers[K]) scheduleProcessingTime() {
	next, ok := t.proc.Peek()
	if !ok || t.ctx.op.ProcessingTime == nil {
		return
	}
	if t.cancel != nil {
		if next >= t.armed {
			return
		}
		t.cancel()
	}
	t.armed = next
	t.cancel = t.ctx.op.ProcessingTime.Schedule(time.UnixMilli(next), t.onProcessingTime)
}

// onProcessingTime runs on the task goroutine when the clock reached the
// armed time: it fires the due timers and arms the next.
func (t *keyedTimers[K]) onProcessingTime() {
	t.cancel, t.armed = nil, math.MaxInt64
	now := t.ctx.CurrentProcessingTime()
	if err := t.fire(t.proc, now, ProcessingTime); err != nil {
		t.ctx.op.Fail(err)
		return
	}
	t.scheduleProcessingTime()
}

func (t *keyedTimers[K]) stop() {
	if t.cancel != nil {
		t.cancel()
		t.cancel = nil
	}
}
