// Package queries runs the Nexmark benchmark on weir: Source generates
// the events as a checkpointed, partitioned weir source, Events adds it to
// a job with event time, and Qn builds query n over a stream of events,
// emitting the row types of package nexmark.
package queries

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/nexmark"
)

// OutOfOrderness is the watermark bound of the reference's table: the
// watermark trails the largest event time seen by 4 s.
const OutOfOrderness = 4 * time.Second

// Source is a replayable weir source of the events of a generator
// configuration, in Partitions partitions: partition p holds the event
// numbers p, p+Partitions, p+2·Partitions, ... below Config.MaxEvents (no
// end if 0), in order; its position (the next offset) is checkpointed, so a
// restored job regenerates exactly the events after it. Partition p is read
// by subtask p mod parallelism; a job may restore at another parallelism.
// Unlike the reference's Flink source, whose splits each run their own
// timeline over their own id range, the partitions share one sequence of
// event numbers: events, ids and timestamps do not depend on the number of
// partitions, and event time advances at Config.EventsPerSecond overall.
type Source struct {
	Config     nexmark.GeneratorConfig
	Partitions int
	// Paced emits every event no earlier than its event time after the
	// start (the reference's rate limit when maxEmitSpeed is false);
	// otherwise events come as fast as the job takes them.
	Paced bool
}

// NewSource returns a source of cfg's events in partitions partitions.
func NewSource(cfg nexmark.GeneratorConfig, partitions int) *Source {
	return &Source{Config: cfg, Partitions: partitions}
}

// Events adds src to the job with event time: records are stamped with
// their Timestamp and each partition generates watermarks with the
// reference's bounded out-of-orderness (OutOfOrderness).
func Events(env *weir.Environment, src *Source) weir.Stream[nexmark.Event] {
	ws := weir.ForBoundedOutOfOrderness[nexmark.Event](OutOfOrderness).
		WithTimestampAssigner(func(e nexmark.Event, _ int64) int64 { return e.Timestamp })
	return weir.FromSourceWithWatermarks(env, src, ws, "nexmark")
}

// positionSize is the size of a checkpointed position: partition and
// next offset, big-endian int64s.
const positionSize = 16

// CreateReader implements weir.Source.
func (s *Source) CreateReader(ctx weir.SourceContext) (weir.SourceReader[nexmark.Event], error) {
	if s.Partitions < 1 {
		return nil, fmt.Errorf("nexmark source needs at least 1 partition, got %d", s.Partitions)
	}
	g, err := nexmark.NewGenerator(s.Config)
	if err != nil {
		return nil, fmt.Errorf("cannot create nexmark source reader: %w", err)
	}
	r := &reader{g: g, n: int64(s.Partitions), max: s.Config.MaxEvents, paced: s.Paced, base: s.Config.BaseTime}
	for p := ctx.Subtask; p < s.Partitions; p += max(ctx.Parallelism, 1) {
		r.parts = append(r.parts, p)
	}
	r.next = make([]int64, len(r.parts))
	for _, e := range ctx.Restored {
		if len(e) != positionSize {
			return nil, fmt.Errorf("cannot restore nexmark source: position entry has %d bytes, want %d", len(e), positionSize)
		}
		p, off := int64(binary.BigEndian.Uint64(e)), int64(binary.BigEndian.Uint64(e[8:]))
		if p < 0 || p >= int64(s.Partitions) || off < 0 {
			return nil, fmt.Errorf("cannot restore nexmark source: position (partition %d, offset %d) outside the %d partitions", p, off, s.Partitions)
		}
		for i, mine := range r.parts {
			if mine == int(p) {
				r.next[i] = off
			}
		}
	}
	r.start = time.Now()
	return r, nil
}

type reader struct {
	g     *nexmark.Generator
	n     int64 // partitions
	max   int64 // events in all; 0: no end
	parts []int
	next  []int64 // next offset of each partition
	cur   int
	paced bool
	base  int64
	start time.Time
	timer chan struct{}
}

// eventNumber is the event number at offset off of partition p.
func (r *reader) eventNumber(p int, off int64) int64 { return off*r.n + int64(p) }

func (r *reader) Read(buf []nexmark.Event) ([]nexmark.Event, weir.ReadStatus, error) {
	buf, _, st := r.read(buf, nil, false)
	return buf, st, nil
}

// Splits implements weir.SplitReader: the partitions this reader owns.
func (r *reader) Splits() []int { return r.parts }

// ReadSplits implements weir.SplitReader: watermarks are generated per
// partition.
func (r *reader) ReadSplits(buf []nexmark.Event, splits []int) ([]nexmark.Event, []int, weir.ReadStatus, error) {
	buf, splits, st := r.read(buf, splits, true)
	return buf, splits, st, nil
}

// run is how many events a partition gives in one turn of the round robin.
const run = 64

func (r *reader) read(buf []nexmark.Event, splits []int, withSplits bool) ([]nexmark.Event, []int, weir.ReadStatus) {
	r.timer = nil
	want := cap(buf) - len(buf)
	ended, waiting := 0, 0
	var due int64
	if r.paced {
		due = r.base + time.Since(r.start).Milliseconds()
	}
	for want > 0 && ended+waiting < len(r.parts) {
		i := r.cur
		r.cur = (r.cur + 1) % len(r.parts)
		p, off := r.parts[i], r.next[i]
		k := 0
		for ; k < min(want, run); k++ {
			num := r.eventNumber(p, off+int64(k))
			if r.max > 0 && num >= r.max {
				break
			}
			if r.paced && r.g.Timestamp(num) > due {
				break
			}
			buf = append(buf, r.g.Event(num))
			if withSplits {
				splits = append(splits, p)
			}
		}
		r.next[i] = off + int64(k)
		want -= k
		if k == 0 {
			if r.max > 0 && r.eventNumber(p, off) >= r.max {
				ended++
			} else {
				waiting++
			}
		} else {
			ended, waiting = 0, 0
		}
	}
	switch {
	case len(buf) > 0:
		return buf, splits, weir.MoreAvailable
	case ended == len(r.parts):
		return buf, splits, weir.EndOfInput
	}
	// Paced and nothing due yet: wake up when the earliest next event is.
	wait := time.Duration(1<<63 - 1)
	for i, p := range r.parts {
		num := r.eventNumber(p, r.next[i])
		if r.max > 0 && num >= r.max {
			continue
		}
		wait = min(wait, time.Duration(r.g.Timestamp(num)-r.base)*time.Millisecond-time.Since(r.start))
	}
	t := make(chan struct{})
	r.timer = t
	time.AfterFunc(max(wait, time.Millisecond), func() { close(t) })
	return buf, splits, weir.NothingAvailable
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (r *reader) Available() <-chan struct{} {
	if r.timer != nil {
		return r.timer
	}
	return closed
}

// Snapshot implements weir.SourceReader: (partition, next offset) of
// every partition this reader owns.
func (r *reader) Snapshot(checkpoint.ID) ([][]byte, error) {
	out := make([][]byte, len(r.parts))
	for i, p := range r.parts {
		b := make([]byte, positionSize)
		binary.BigEndian.PutUint64(b, uint64(p))
		binary.BigEndian.PutUint64(b[8:], uint64(r.next[i]))
		out[i] = b
	}
	return out, nil
}

func (r *reader) Close() error { return nil }
