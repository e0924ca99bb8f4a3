package weir

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"
)

// TimeWindow is a time window: the records with timestamps in [Start, End).
// GlobalWindow holds every record of a key.
type TimeWindow struct {
	Start, End int64
}

// GlobalWindow is the one window of GlobalWindows.
var GlobalWindow = TimeWindow{Start: math.MinInt64, End: math.MaxInt64}

// MaxTimestamp is the largest timestamp in the window (End-1): an
// event-time window is complete when the watermark reaches it, and the
// records a window emits carry it as their timestamp.
func (w TimeWindow) MaxTimestamp() int64 {
	if w == GlobalWindow {
		return math.MaxInt64
	}
	return w.End - 1
}

// Intersects reports whether w and o overlap or touch (session windows
// merge then).
func (w TimeWindow) Intersects(o TimeWindow) bool { return w.Start <= o.End && w.End >= o.Start }

// Cover is the smallest window holding w and o.
func (w TimeWindow) Cover(o TimeWindow) TimeWindow {
	return TimeWindow{Start: min(w.Start, o.Start), End: max(w.End, o.End)}
}

func (w TimeWindow) String() string {
	if w == GlobalWindow {
		return "GlobalWindow"
	}
	return fmt.Sprintf("[%d,%d)", w.Start, w.End)
}

// windowNamespace encodes w as the namespace of its timers.
func windowNamespace(w TimeWindow) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(w.Start))
	binary.BigEndian.PutUint64(b[8:], uint64(w.End))
	return string(b[:])
}

func windowOfNamespace(ns string) (TimeWindow, error) {
	if len(ns) != 16 {
		return TimeWindow{}, fmt.Errorf("timer namespace of %d bytes is not a window", len(ns))
	}
	return TimeWindow{Start: int64(binary.BigEndian.Uint64([]byte(ns[:8]))), End: int64(binary.BigEndian.Uint64([]byte(ns[8:])))}, nil
}

// WindowAssigner puts records into windows (Flink's WindowAssigner). The
// assigners of this package cover tumbling, sliding and session windows in
// event and processing time, and global windows.
type WindowAssigner interface {
	// AssignWindows appends to dst the windows of a record with timestamp
	// ts (event time; NoTimestamp in processing time) arriving at
	// processing time now (milliseconds).
	AssignWindows(ts, now int64, dst []TimeWindow) []TimeWindow
	// IsEventTime says whether the windows follow event time.
	IsEventTime() bool
	// DefaultTrigger fires the windows when nothing else is said.
	DefaultTrigger() Trigger
	// IsMerging says whether windows that intersect merge (sessions).
	IsMerging() bool
}

// TumblingWindows are fixed-size, non-overlapping windows aligned to the
// epoch plus an offset.
type TumblingWindows struct {
	size, offset int64
	eventTime    bool
}

// TumblingEventTimeWindows are tumbling windows of size in event time.
func TumblingEventTimeWindows(size time.Duration) TumblingWindows {
	return TumblingWindows{size: size.Milliseconds(), eventTime: true}
}

// TumblingProcessingTimeWindows are tumbling windows of size in processing
// time.
func TumblingProcessingTimeWindows(size time.Duration) TumblingWindows {
	return TumblingWindows{size: size.Milliseconds()}
}

// WithOffset shifts the windows' alignment by offset (a time zone, say).
func (t TumblingWindows) WithOffset(offset time.Duration) TumblingWindows {
	t.offset = offset.Milliseconds()
	return t
}

func (t TumblingWindows) AssignWindows(ts, now int64, dst []TimeWindow) []TimeWindow {
	if !t.eventTime {
		ts = now
	}
	start := windowStart(ts, t.offset, t.size)
	return append(dst, TimeWindow{Start: start, End: start + t.size})
}

func (t TumblingWindows) IsEventTime() bool { return t.eventTime }
func (t TumblingWindows) IsMerging() bool   { return false }
func (t TumblingWindows) DefaultTrigger() Trigger {
	if t.eventTime {
		return EventTimeTrigger()
	}
	return ProcessingTimeTrigger()
}
func (t TumblingWindows) validate() error { return validateSizes("tumbling", t.size, t.size, t.offset) }

// SlidingWindows are windows of a size that start every slide, so a record
// is in size/slide of them.
type SlidingWindows struct {
	size, slide, offset int64
	eventTime           bool
}

// SlidingEventTimeWindows are sliding windows in event time.
func SlidingEventTimeWindows(size, slide time.Duration) SlidingWindows {
	return SlidingWindows{size: size.Milliseconds(), slide: slide.Milliseconds(), eventTime: true}
}

// SlidingProcessingTimeWindows are sliding windows in processing time.
func SlidingProcessingTimeWindows(size, slide time.Duration) SlidingWindows {
	return SlidingWindows{size: size.Milliseconds(), slide: slide.Milliseconds()}
}

// WithOffset shifts the windows' alignment by offset.
func (s SlidingWindows) WithOffset(offset time.Duration) SlidingWindows {
	s.offset = offset.Milliseconds()
	return s
}

func (s SlidingWindows) AssignWindows(ts, now int64, dst []TimeWindow) []TimeWindow {
	if !s.eventTime {
		ts = now
	}
	last := windowStart(ts, s.offset, s.slide)
	for start := last; start > ts-s.size; start -= s.slide {
		dst = append(dst, TimeWindow{Start: start, End: start + s.size})
	}
	return dst
}

func (s SlidingWindows) IsEventTime() bool { return s.eventTime }
func (s SlidingWindows) IsMerging() bool   { return false }
func (s SlidingWindows) DefaultTrigger() Trigger {
	if s.eventTime {
		return EventTimeTrigger()
	}
	return ProcessingTimeTrigger()
}
func (s SlidingWindows) validate() error { return validateSizes("sliding", s.size, s.slide, s.offset) }

// SessionWindows put a key's records into sessions: a record opens the
// window [ts, ts+gap), and windows that intersect merge, so a session ends
// after gap without records.
type SessionWindows struct {
	gap       int64
	eventTime bool
}

// EventTimeSessionWindows are session windows in event time.
func EventTimeSessionWindows(gap time.Duration) SessionWindows {
	return SessionWindows{gap: gap.Milliseconds(), eventTime: true}
}

// ProcessingTimeSessionWindows are session windows in processing time.
func ProcessingTimeSessionWindows(gap time.Duration) SessionWindows {
	return SessionWindows{gap: gap.Milliseconds()}
}

func (s SessionWindows) AssignWindows(ts, now int64, dst []TimeWindow) []TimeWindow {
	if !s.eventTime {
		ts = now
	}
	return append(dst, TimeWindow{Start: ts, End: ts + s.gap})
}

func (s SessionWindows) IsEventTime() bool { return s.eventTime }
func (s SessionWindows) IsMerging() bool   { return true }
func (s SessionWindows) DefaultTrigger() Trigger {
	if s.eventTime {
		return EventTimeTrigger()
	}
	return ProcessingTimeTrigger()
}
func (s SessionWindows) validate() error {
	if s.gap <= 0 {
		return fmt.Errorf("session windows need a gap of at least 1ms, got %dms", s.gap)
	}
	return nil
}

// GlobalWindows puts every record of a key into GlobalWindow, which never
// fires unless a trigger says so (CountTrigger, for one).
type GlobalWindows struct{}

func (GlobalWindows) AssignWindows(_, _ int64, dst []TimeWindow) []TimeWindow {
	return append(dst, GlobalWindow)
}
func (GlobalWindows) IsEventTime() bool       { return false }
func (GlobalWindows) IsMerging() bool         { return false }
func (GlobalWindows) DefaultTrigger() Trigger { return NeverTrigger() }

func validateSizes(kind string, size, slide, offset int64) error {
	switch {
	case size <= 0:
		return fmt.Errorf("%s windows need a size of at least 1ms, got %dms", kind, size)
	case slide <= 0:
		return fmt.Errorf("%s windows need a slide of at least 1ms, got %dms", kind, slide)
	case offset < 0 || offset >= slide:
		return fmt.Errorf("%s windows need an offset in [0, %dms), got %dms", kind, slide, offset)
	}
	return nil
}

// windowStart is the start of the window of size (aligned to offset) that
// holds ts, also for timestamps before 1970.
func windowStart(ts, offset, size int64) int64 {
	r := (ts - offset) % size
	if r < 0 {
		r += size
	}
	return ts - r
}
