// Package watermark is weir's event-time bookkeeping as pure state
// machines: events in, the watermark and idleness to emit out; no
// goroutines, no clock reads (time is passed in).
//
// A watermark t says: no record with a timestamp at or below t will come
// any more (later ones are late). Timestamps and watermarks are
// milliseconds since 1970 as int64; Min means "no watermark yet", Max "the
// input ended": every event-time timer and window fires.
//
// Valve is a task's input side (Flink's StatusWatermarkValve): every input
// channel has a watermark and a status. The task's watermark is the
// minimum over the channels that are active and aligned; it only ever
// grows. An idle channel (its source has no data now) does not hold the
// watermark back; when every channel is idle the task is idle, and its
// watermark advances to the maximum over all channels. A channel that
// becomes active again with a watermark below the task's is not aligned:
// it is left out of the minimum until it catches up, so the task's
// watermark never goes back. An ended channel counts as Max.
//
// Splits is a source's side: one watermark per split (partition) of the
// source, fed by the source's watermark generator per split; the source's
// watermark is the minimum over its active splits. A split with no record
// for the idle timeout, or with none at all, is idle; a split that ended
// counts as Max.
package watermark

import "math"

// Sentinels.
const (
	// Min is the watermark before any: nothing is known yet.
	Min int64 = math.MinInt64
	// Max is the watermark at the end of the input: everything fires.
	Max int64 = math.MaxInt64
)

// Status is whether an input produces data now.
type Status uint8

const (
	Active Status = iota
	Idle
)

func (s Status) String() string {
	if s == Idle {
		return "idle"
	}
	return "active"
}

// Output is what an event makes the task emit downstream, in order: a new
// (larger) watermark, then a status change. Either may be absent.
type Output struct {
	Watermark     int64
	HasWatermark  bool
	Status        Status
	StatusChanged bool
}

type channel struct {
	wm      int64
	status  Status
	aligned bool
	ended   bool
}

// Valve tracks the watermark and status of a task's input channels. It
// is not safe for concurrent use: the task goroutine owns it.
type Valve struct {
	ch     []channel
	last   int64  // last watermark emitted
	status Status // last status emitted
}

// NewValve returns a valve for n channels, all active with watermark Min.
func NewValve(n int) *Valve {
	v := &Valve{ch: make([]channel, n), last: Min}
	for i := range v.ch {
		v.ch[i] = channel{wm: Min, aligned: true}
	}
	return v
}

// Current is the task's watermark (the last emitted), and its status.
func (v *Valve) Current() (int64, Status) { return v.last, v.status }

// OnWatermark handles watermark wm on channel ch. A watermark on an idle
// channel, or while the task is idle, is ignored (a channel announces it is
// active before it sends watermarks); one that does not raise the
// channel's watermark changes nothing.
func (v *Valve) OnWatermark(ch int, wm int64) Output {
	c := &v.ch[ch]
	if c.ended || c.status == Idle || v.status == Idle || wm <= c.wm {
		return Output{}
	}
	c.wm = wm
	if !c.aligned && wm >= v.last {
		c.aligned = true
	}
	return v.advanceToMin()
}

// OnStatus handles a status change of channel ch.
func (v *Valve) OnStatus(ch int, s Status) Output {
	c := &v.ch[ch]
	if c.ended || c.status == s {
		return Output{}
	}
	c.status = s
	if s == Idle {
		c.aligned = false
		if v.allIdle() {
			// Nothing holds the watermark back: flush to the largest
			// watermark any channel reached, then go idle.
			out := v.advanceTo(v.maxAll())
			if v.status != Idle {
				v.status = Idle
				out.Status, out.StatusChanged = Idle, true
			}
			return out
		}
		return v.advanceToMin()
	}
	// Active again: aligned only if it is not behind the task.
	c.aligned = c.wm >= v.last
	var out Output
	if v.status == Idle {
		v.status = Active
		out.Status, out.StatusChanged = Active, true
	}
	return out
}

// OnEndOfPartition handles the end of channel ch: it counts as Max from
// now on.
func (v *Valve) OnEndOfPartition(ch int) Output {
	c := &v.ch[ch]
	if c.ended {
		return Output{}
	}
	c.ended, c.wm, c.status, c.aligned = true, Max, Active, true
	out := v.advanceToMin()
	if v.status == Idle && !v.allIdle() {
		v.status = Active
		out.Status, out.StatusChanged = Active, true
	}
	return out
}

func (v *Valve) allIdle() bool {
	for _, c := range v.ch {
		if c.ended || c.status == Active {
			return false
		}
	}
	return true
}

func (v *Valve) maxAll() int64 {
	m := Min
	for _, c := range v.ch {
		m = max(m, c.wm)
	}
	return m
}

// advanceToMin emits the minimum over active, aligned channels if it
// exceeds the last watermark.
func (v *Valve) advanceToMin() Output {
	m, any := Max, false
	for _, c := range v.ch {
		if c.status == Active && c.aligned {
			m, any = min(m, c.wm), true
		}
	}
	if !any {
		return Output{}
	}
	return v.advanceTo(m)
}

func (v *Valve) advanceTo(wm int64) Output {
	if wm <= v.last {
		return Output{}
	}
	v.last = wm
	return Output{Watermark: wm, HasWatermark: true}
}

// AddChannel adds a channel (a split discovered later), active with
// watermark Min and aligned only once it catches up, and returns its
// index.
func (v *Valve) AddChannel() int {
	v.ch = append(v.ch, channel{wm: Min, aligned: v.last == Min})
	return len(v.ch) - 1
}

// Splits combines the watermarks of a source's splits (partitions): each
// split is a channel of a Valve, fed by the watermarks its generator emits;
// a split from which no record came for the idle timeout is idle until its
// next record.
type Splits struct {
	valve       *Valve
	idleTimeout int64 // milliseconds; 0: never idle by timeout
	index       map[int]int
	lastRecord  []int64 // per channel, processing time in milliseconds
}

// NewSplits returns the tracker of a source's splits; idleTimeoutMillis 0
// disables idleness by timeout.
func NewSplits(idleTimeoutMillis int64) *Splits {
	return &Splits{valve: NewValve(0), idleTimeout: idleTimeoutMillis, index: map[int]int{}}
}

func (s *Splits) channel(split int, now int64) int {
	i, ok := s.index[split]
	if !ok {
		i = s.valve.AddChannel()
		s.index[split] = i
		s.lastRecord = append(s.lastRecord, now)
	}
	return i
}

// Add registers split at processing time now (the idle timeout counts
// from here).
func (s *Splits) Add(split int, now int64) { s.channel(split, now) }

// OnRecord records that a record of split came at processing time now: an
// idle split is active again.
func (s *Splits) OnRecord(split int, now int64) Output {
	i := s.channel(split, now)
	s.lastRecord[i] = now
	return s.valve.OnStatus(i, Active)
}

// OnWatermark feeds the watermark split's generator emitted.
func (s *Splits) OnWatermark(split int, wm int64, now int64) Output {
	return s.valve.OnWatermark(s.channel(split, now), wm)
}

// OnStatus is an explicit idleness from split's generator.
func (s *Splits) OnStatus(split int, st Status, now int64) Output {
	return s.valve.OnStatus(s.channel(split, now), st)
}

// OnEnd records that split has no more records.
func (s *Splits) OnEnd(split int, now int64) Output {
	return s.valve.OnEndOfPartition(s.channel(split, now))
}

// Tick marks idle the splits that have had no record for the idle
// timeout at processing time now.
func (s *Splits) Tick(now int64) Output {
	var out Output
	if s.idleTimeout <= 0 {
		return out
	}
	for _, i := range s.index {
		if now-s.lastRecord[i] >= s.idleTimeout {
			o := s.valve.OnStatus(i, Idle)
			out = merge(out, o)
		}
	}
	return out
}

// Current is the source's watermark and status.
func (s *Splits) Current() (int64, Status) { return s.valve.Current() }

// merge folds two outputs of consecutive events into one: the later
// watermark (watermarks only grow) and the later status.
func merge(a, b Output) Output {
	if b.HasWatermark {
		a.Watermark, a.HasWatermark = b.Watermark, true
	}
	if b.StatusChanged {
		if a.StatusChanged && a.Status != b.Status {
			a.StatusChanged = false // changed and changed back
		} else {
			a.Status, a.StatusChanged = b.Status, true
		}
	}
	return a
}
