package weir

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/weirstream/weir/checkpoint"
)

// closedChan is always ready: "read again now".
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// GeneratorSource is a deterministic, replayable source of numbered
// records: partitions numbered 0..Partitions-1, each a sequence of offsets
// 0, 1, 2, ...; the record at an offset is Gen(partition, offset). It plays
// the role of a Kafka topic whose records are a pure function of their
// position. Partition p is read by subtask p % parallelism; the position
// (next offset) of every partition is checkpointed.
type GeneratorSource[T any] struct {
	Partitions int
	// Limit is the number of records per partition; -1 for no end.
	Limit int64
	// RatePerSecond bounds the records per second of each reader (0: no bound).
	RatePerSecond float64
	Gen           func(partition int, offset int64) T
}

// Generator returns a GeneratorSource; see its fields.
func Generator[T any](partitions int, limit int64, gen func(partition int, offset int64) T) *GeneratorSource[T] {
	return &GeneratorSource[T]{Partitions: partitions, Limit: limit, Gen: gen}
}

// WithRate bounds each reader to perSecond records per second.
func (g *GeneratorSource[T]) WithRate(perSecond float64) *GeneratorSource[T] {
	g.RatePerSecond = perSecond
	return g
}

// CreateReader implements Source.
func (g *GeneratorSource[T]) CreateReader(ctx SourceContext) (SourceReader[T], error) {
	if g.Partitions < 1 {
		return nil, fmt.Errorf("generator source needs at least 1 partition, got %d", g.Partitions)
	}
	if g.Gen == nil {
		return nil, errors.New("generator source has no Gen function")
	}
	r := &generatorReader[T]{g: g}
	for p := ctx.Subtask; p < g.Partitions; p += ctx.Parallelism {
		r.parts = append(r.parts, p)
	}
	r.next = make([]int64, len(r.parts))
	for _, e := range ctx.Restored {
		p, off, err := decodePosition(e)
		if err != nil {
			return nil, fmt.Errorf("cannot restore generator source position: %w", err)
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

func encodePosition(split, pos int64) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint64(b, uint64(split))
	binary.BigEndian.PutUint64(b[8:], uint64(pos))
	return b
}

func decodePosition(b []byte) (split, pos int64, err error) {
	if len(b) != 16 {
		return 0, 0, fmt.Errorf("position entry has %d bytes, want 16", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), int64(binary.BigEndian.Uint64(b[8:])), nil
}

type generatorReader[T any] struct {
	g       *GeneratorSource[T]
	parts   []int
	next    []int64
	cur     int
	start   time.Time
	emitted int64
	timer   chan struct{}
}

func (r *generatorReader[T]) Read(buf []T) ([]T, ReadStatus, error) {
	buf, _, st, err := r.read(buf, nil, false)
	return buf, st, err
}

// Splits implements SplitReader: the partitions this reader owns.
func (r *generatorReader[T]) Splits() []int { return r.parts }

// ReadSplits implements SplitReader: each record's split is its partition,
// so a watermark strategy generates watermarks per partition.
func (r *generatorReader[T]) ReadSplits(buf []T, splits []int) ([]T, []int, ReadStatus, error) {
	return r.read(buf, splits, true)
}

func (r *generatorReader[T]) read(buf []T, splits []int, withSplits bool) ([]T, []int, ReadStatus, error) {
	want := cap(buf) - len(buf)
	if r.g.RatePerSecond > 0 {
		allowed := int64(time.Since(r.start).Seconds()*r.g.RatePerSecond) - r.emitted
		if allowed <= 0 {
			r.timer = make(chan struct{})
			t := r.timer
			time.AfterFunc(time.Duration(float64(time.Second)/r.g.RatePerSecond)+time.Millisecond, func() { close(t) })
			return buf, splits, NothingAvailable, nil
		}
		want = int(min(int64(want), allowed))
	}
	ended := 0
	for want > 0 && ended < len(r.parts) {
		i := r.cur
		r.cur++
		if r.cur == len(r.parts) {
			r.cur = 0
		}
		off := r.next[i]
		if r.g.Limit >= 0 && off >= r.g.Limit {
			ended++
			continue
		}
		ended = 0
		// Take a run from this partition, so the round robin costs little.
		n := min(want, 64)
		if r.g.Limit >= 0 {
			n = int(min(int64(n), r.g.Limit-off))
		}
		p := r.parts[i]
		for k := range n {
			buf = append(buf, r.g.Gen(p, off+int64(k)))
		}
		if withSplits {
			for range n {
				splits = append(splits, p)
			}
		}
		r.next[i] = off + int64(n)
		want -= n
		r.emitted += int64(n)
	}
	if ended >= len(r.parts) && len(buf) == 0 {
		return buf, splits, EndOfInput, nil
	}
	return buf, splits, MoreAvailable, nil
}

func (r *generatorReader[T]) Available() <-chan struct{} {
	if r.timer != nil {
		return r.timer
	}
	return closedChan
}

func (r *generatorReader[T]) Snapshot(checkpoint.ID) ([][]byte, error) {
	out := make([][]byte, len(r.parts))
	for i, p := range r.parts {
		out[i] = encodePosition(int64(p), r.next[i])
	}
	return out, nil
}

func (r *generatorReader[T]) Close() error { return nil }

// SliceSource emits the elements of a slice, in order, from one subtask;
// its position (the index of the next element) is checkpointed.
type SliceSource[T any] struct{ Elements []T }

// FromSlice adds a source that emits elems (a non-parallel source, like
// Flink's fromElements).
func FromSlice[T any](env *Environment, elems []T) Stream[T] {
	s := FromSource[T](env, &SliceSource[T]{Elements: elems}, "slice")
	s.n.FixedParallelism = true
	s.n.Parallelism = 1
	return s
}

// CreateReader implements Source.
func (s *SliceSource[T]) CreateReader(ctx SourceContext) (SourceReader[T], error) {
	r := &sliceReader[T]{elems: s.Elements, own: ctx.Subtask == 0}
	for _, e := range ctx.Restored {
		_, pos, err := decodePosition(e)
		if err != nil {
			return nil, fmt.Errorf("cannot restore slice source position: %w", err)
		}
		if pos < 0 || pos > int64(len(s.Elements)) {
			return nil, fmt.Errorf("cannot restore slice source: position %d outside the %d elements", pos, len(s.Elements))
		}
		r.next = int(pos)
	}
	return r, nil
}

type sliceReader[T any] struct {
	elems []T
	next  int
	own   bool
}

func (r *sliceReader[T]) Read(buf []T) ([]T, ReadStatus, error) {
	if !r.own || r.next >= len(r.elems) {
		return buf, EndOfInput, nil
	}
	n := min(cap(buf)-len(buf), len(r.elems)-r.next)
	buf = append(buf, r.elems[r.next:r.next+n]...)
	r.next += n
	return buf, MoreAvailable, nil
}

func (r *sliceReader[T]) Available() <-chan struct{} { return closedChan }

func (r *sliceReader[T]) Snapshot(checkpoint.ID) ([][]byte, error) {
	if !r.own {
		return nil, nil
	}
	return [][]byte{encodePosition(0, int64(r.next))}, nil
}

func (r *sliceReader[T]) Close() error { return nil }
