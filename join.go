package weir

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/weirstream/weir/runtime"
	"github.com/weirstream/weir/state"
)

// Joins of two keyed streams: the interval join (event time, bounded
// buffers), window joins and co-groups (on the window operator), and the
// regular join (unbounded buffers, optionally with a state TTL). Each is
// one keyed operator reading both streams (see connect.go).

// IntervalJoined is an interval join of two keyed streams being
// configured: IntervalJoin(ka, kb).Between(lower, upper), optionally with
// exclusive bounds, then IntervalJoinProcess.
type IntervalJoined[K comparable, A, B any] struct {
	ka           KeyedStream[K, A]
	kb           KeyedStream[K, B]
	lower, upper int64
	between      bool
	lowerExcl    bool
	upperExcl    bool
}

// IntervalJoin joins two keyed streams in event time (Flink's interval
// join): a record a of ka and a record b of kb with the same key form a
// pair when b's timestamp is in [a's + lower, a's + upper] (set with
// Between). Both streams need event timestamps and watermarks.
func IntervalJoin[K comparable, A, B any](ka KeyedStream[K, A], kb KeyedStream[K, B]) IntervalJoined[K, A, B] {
	return IntervalJoined[K, A, B]{ka: ka, kb: kb}
}

// Between sets the bounds, inclusive unless LowerBoundExclusive or
// UpperBoundExclusive is called. lower may be negative (b before a);
// lower must not be above upper.
func (j IntervalJoined[K, A, B]) Between(lower, upper time.Duration) IntervalJoined[K, A, B] {
	j.lower, j.upper, j.between = lower.Milliseconds(), upper.Milliseconds(), true
	return j
}

// LowerBoundExclusive excludes b.ts == a.ts + lower.
func (j IntervalJoined[K, A, B]) LowerBoundExclusive() IntervalJoined[K, A, B] {
	j.lowerExcl = true
	return j
}

// UpperBoundExclusive excludes b.ts == a.ts + upper.
func (j IntervalJoined[K, A, B]) UpperBoundExclusive() IntervalJoined[K, A, B] {
	j.upperExcl = true
	return j
}

// IntervalJoinContext is what an interval join function sees with a pair.
type IntervalJoinContext[K comparable] struct {
	keyed       *KeyedContext[K]
	left, right int64
}

// LeftTimestamp is the timestamp of the pair's record of the first stream.
func (c *IntervalJoinContext[K]) LeftTimestamp() int64 { return c.left }

// RightTimestamp is the timestamp of the pair's record of the second
// stream.
func (c *IntervalJoinContext[K]) RightTimestamp() int64 { return c.right }

// Timestamp is the timestamp of the records the function emits: the larger
// of the two.
func (c *IntervalJoinContext[K]) Timestamp() int64 { return max(c.left, c.right) }

// Key is the pair's key.
func (c *IntervalJoinContext[K]) Key() K { return c.keyed.CurrentKey() }

// Keyed is the key's context (side outputs with Output, the watermark).
func (c *IntervalJoinContext[K]) Keyed() *KeyedContext[K] { return c.keyed }

// IntervalJoinFunc is called with every joined pair; what it emits carries
// the larger timestamp of the two records.
type IntervalJoinFunc[K comparable, A, B, OUT any] func(a A, b B, ctx *IntervalJoinContext[K], out Collector[OUT]) error

// IntervalJoinProcess runs the interval join j, calling fn with every pair
// once (in the order the second record of the pair arrives).
//
// Each side's records are buffered in keyed map state (per key: timestamp
// -> records) while a record of the other side may still join them, and
// are dropped by an event-time timer once the watermark passes: a record
// of the first stream at ts is kept until the watermark reaches ts+upper,
// one of the second until it reaches ts-lower. A record at or behind the
// watermark when it arrives is late and dropped. Set a UID on the result:
// the buffers are found under it.
func IntervalJoinProcess[K comparable, A, B, OUT any](j IntervalJoined[K, A, B], fn IntervalJoinFunc[K, A, B, OUT]) Stream[OUT] {
	lower, upper := j.lower, j.upper
	if j.lowerExcl {
		lower++
	}
	if j.upperExcl {
		upper--
	}
	s := keyedCoNode(ConnectKeyed(j.ka, j.kb), "IntervalJoin", func(out runtime.Collector[OUT]) keyedLogic[K, connected[A, B]] {
		return &intervalJoinLogic[K, A, B, OUT]{fn: fn, out: out, lower: lower, upper: upper}
	})
	switch {
	case !j.between:
		s.env.setErr(fmt.Errorf("operator %s: an interval join needs its bounds: call Between", s.n.Name))
	case lower > upper:
		s.env.setErr(fmt.Errorf("operator %s: interval join bounds [%dms, %dms] (after exclusions) hold no time", s.n.Name, lower, upper))
	case fn == nil:
		s.env.setErr(fmt.Errorf("operator %s: IntervalJoinProcess needs a function, got nil", s.n.Name))
	}
	return s
}

// intervalJoinTestHook, when set (by tests), is told at the end of the
// input how many records a subtask's buffers still hold: rows added minus
// rows dropped in this attempt.
var intervalJoinTestHook func(subtask int, buffered int64)

// Timer namespaces of the interval join's cleanup timers.
const (
	cleanupLeft  = "l"
	cleanupRight = "r"
)

type intervalJoinLogic[K comparable, A, B, OUT any] struct {
	fn           IntervalJoinFunc[K, A, B, OUT]
	out          runtime.Collector[OUT]
	lower, upper int64
	// left and right buffer each side's records per key, by timestamp:
	// one map entry per timestamp, so a record costs one entry's write,
	// not a rewrite of the key's whole buffer.
	left     MapState[int64, []A]
	right    MapState[int64, []B]
	jctx     IntervalJoinContext[K]
	buffered int64
}

func (l *intervalJoinLogic[K, A, B, OUT]) open(ctx *KeyedContext[K]) (err error) {
	l.jctx.keyed = ctx
	if l.left, err = state.GetMapState[K, int64, []A](ctx.backend, "interval-join/left-rows", state.CodecFor[int64](), newRowsCodec[A]()); err != nil {
		return ctx.registerError(err)
	}
	l.right, err = state.GetMapState[K, int64, []B](ctx.backend, "interval-join/right-rows", state.CodecFor[int64](), newRowsCodec[B]())
	return ctx.registerError(err)
}

func (l *intervalJoinLogic[K, A, B, OUT]) operator() any    { return l.fn }
func (l *intervalJoinLogic[K, A, B, OUT]) usesTimers() bool { return true }

func (l *intervalJoinLogic[K, A, B, OUT]) process(ctx *KeyedContext[K], r connected[A, B]) error {
	ts, ok := ctx.Timestamp()
	if !ok {
		return fmt.Errorf("operator %s: a record has no timestamp, which an interval join needs: give the sources a WatermarkStrategy with a timestamp assigner, or use AssignTimestampsAndWatermarks", ctx.op.OperatorName)
	}
	wm := *ctx.wm
	if ts <= wm {
		return nil // late
	}
	slot := ctx.op.Timestamp
	defer func() { *slot = ts }()
	if !r.fromBroadcast {
		// Pairs with the buffered records b of the second stream with
		// b.ts in [ts+lower, ts+upper].
		lo, hi := addSat(ts, l.lower), addSat(ts, l.upper)
		for bts, bs := range l.right.All() {
			if bts < lo || bts > hi {
				continue
			}
			l.jctx.left, l.jctx.right = ts, bts
			*slot = max(ts, bts)
			for _, b := range bs {
				if err := l.fn(r.in, b, &l.jctx, l.out); err != nil {
					return err
				}
			}
		}
		if cleanup := addSat(ts, l.upper); cleanup > wm {
			addRow(l.left, ts, r.in)
			l.buffered++
			ctx.timers.event.Add(cleanup, cleanupLeft)
		}
		return nil
	}
	// Pairs with the buffered records a of the first stream with
	// ts in [a.ts+lower, a.ts+upper].
	lo, hi := addSat(ts, -l.upper), addSat(ts, -l.lower)
	for ats, as := range l.left.All() {
		if ats < lo || ats > hi {
			continue
		}
		l.jctx.left, l.jctx.right = ats, ts
		*slot = max(ts, ats)
		for _, a := range as {
			if err := l.fn(a, r.b, &l.jctx, l.out); err != nil {
				return err
			}
		}
	}
	if cleanup := addSat(ts, -l.lower); cleanup > wm {
		addRow(l.right, ts, r.b)
		l.buffered++
		ctx.timers.event.Add(cleanup, cleanupRight)
	}
	return nil
}

// onTimer drops the bucket the cleanup timer was registered for.
func (l *intervalJoinLogic[K, A, B, OUT]) onTimer(_ *KeyedContext[K], t state.Timer[K]) error {
	switch t.Namespace {
	case cleanupLeft:
		l.buffered -= dropBucket(l.left, addSat(t.Timestamp, -l.upper))
	case cleanupRight:
		l.buffered -= dropBucket(l.right, addSat(t.Timestamp, l.lower))
	}
	return nil
}

// addRow adds x to the bucket ts of m. A stored bucket is never modified
// in place (copy-on-write snapshots of the heap backend may hold it).
func addRow[T any](m MapState[int64, []T], ts int64, x T) {
	rows, _ := m.Get(ts)
	m.Put(ts, append(slices.Clip(rows), x))
}

// dropBucket removes bucket ts from m and returns how many rows it held.
func dropBucket[T any](m MapState[int64, []T], ts int64) int64 {
	rows, ok := m.Get(ts)
	if !ok {
		return 0
	}
	m.Remove(ts)
	return int64(len(rows))
}

func (l *intervalJoinLogic[K, A, B, OUT]) endOfData(ctx *KeyedContext[K]) error {
	if intervalJoinTestHook != nil {
		intervalJoinTestHook(ctx.Subtask(), l.buffered)
	}
	return nil
}

// addSat is a+b, saturated at the int64 bounds.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}

// rowsCodec encodes the records of one timestamp of an interval join's
// buffer: uvarint(number of rows), then each row's encoding (T's built-in
// codec) prefixed by uvarint(length).
type rowsCodec[T any] struct{ c state.Codec[T] }

func newRowsCodec[T any]() rowsCodec[T] { return rowsCodec[T]{state.CodecFor[T]()} }

func (c rowsCodec[T]) Append(dst []byte, rows []T) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rows)))
	for _, x := range rows {
		// Reserve one byte for the length, the usual case, and widen it
		// when the row is longer.
		at := len(dst)
		dst = c.c.Append(append(dst, 0), x)
		if n := len(dst) - at - 1; n < 0x80 {
			dst[at] = byte(n)
		} else {
			row := append([]byte(nil), dst[at+1:]...)
			dst = append(binary.AppendUvarint(dst[:at], uint64(n)), row...)
		}
	}
	return dst
}

func (c rowsCodec[T]) Decode(src []byte) ([]T, error) {
	m, k := binary.Uvarint(src)
	if k <= 0 || m > uint64(len(src)) {
		return nil, fmt.Errorf("interval join buffer: bad row count")
	}
	src = src[k:]
	rows := make([]T, 0, m)
	for range m {
		l, k := binary.Uvarint(src)
		if k <= 0 || l > uint64(len(src)-k) {
			return nil, fmt.Errorf("interval join buffer: row %d is truncated", len(rows))
		}
		v, err := c.c.Decode(src[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("interval join buffer: row %d: %w", len(rows), err)
		}
		rows = append(rows, v)
		src = src[k+int(l):]
	}
	if len(src) != 0 {
		return nil, fmt.Errorf("interval join buffer: trailing bytes")
	}
	return rows, nil
}

// CodecID implements state.VersionedCodec.
func (c rowsCodec[T]) CodecID() string {
	id, v := state.CodecIdentity(c.c)
	return fmt.Sprintf("weir.intervalJoinRows(%s@%d)", id, v)
}

func (c rowsCodec[T]) CodecVersion() int { return 0 }

// Join is the regular (unbounded) inner join of two keyed streams: every
// record is kept in its key's state, and each arriving record is paired
// with every kept record of the other stream with the same key, so that
// every pair is emitted exactly once, when its later record arrives. The
// output is append-only (no pair is ever retracted), and needs no event
// time.
//
// The state grows with every record unless a time-to-live is given
// (WithTTL): a key's records of one side then expire ttl after that side
// last received a record of the key, and records arriving later no longer
// meet them. Set a UID on the result: the kept records are found under it.
func Join[K comparable, A, B, OUT any](ka KeyedStream[K, A], kb KeyedStream[K, B], fn func(a A, b B) OUT, opts ...StateOption) Stream[OUT] {
	s := keyedCoNode(ConnectKeyed(ka, kb), "Join", func(out runtime.Collector[OUT]) keyedLogic[K, connected[A, B]] {
		return &joinLogic[K, A, B, OUT]{fn: fn, out: out, opts: opts}
	})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: Join needs a function, got nil", s.n.Name))
	}
	return s
}

type joinLogic[K comparable, A, B, OUT any] struct {
	fn    func(a A, b B) OUT
	out   runtime.Collector[OUT]
	opts  []StateOption
	left  ListState[A]
	right ListState[B]
}

func (l *joinLogic[K, A, B, OUT]) open(ctx *KeyedContext[K]) (err error) {
	if l.left, err = GetListState[A](ctx, "join/left", l.opts...); err != nil {
		return err
	}
	l.right, err = GetListState[B](ctx, "join/right", l.opts...)
	return err
}

func (l *joinLogic[K, A, B, OUT]) process(_ *KeyedContext[K], r connected[A, B]) error {
	if r.fromBroadcast {
		for _, a := range l.left.Get() {
			l.out.Collect(l.fn(a, r.b))
		}
		l.right.Add(r.b)
		return nil
	}
	for _, b := range l.right.Get() {
		l.out.Collect(l.fn(r.in, b))
	}
	l.left.Add(r.in)
	return nil
}

func (l *joinLogic[K, A, B, OUT]) operator() any { return l.fn }

// joinSide is a record of either stream of a window join or co-group: the
// window operator buffers one record type. Its fields are exported for the
// JSON codec its records are written into checkpoints and sent with.
type joinSide[A, B any] struct {
	L     A    `json:"l"`
	R     B    `json:"r"`
	Right bool `json:"s,omitempty"`
}

// CoGroupFunc is called once per key and window with the records of each
// stream in it (in arrival order; either may be empty, never both). The
// slices are valid only during the call.
type CoGroupFunc[K comparable, A, B, OUT any] func(key K, w TimeWindow, as []A, bs []B, out Collector[OUT]) error

// CoGroup groups the records of two keyed streams by key and window of
// assigner (tumbling, sliding, session, in event or processing time) and
// calls fn for every key and window that has records of either stream,
// when the window fires (Flink's coGroup). It is a WindowProcess over the
// union of both streams: the window's records are kept in keyed state
// until it fires.
func CoGroup[K comparable, A, B, OUT any](ka KeyedStream[K, A], kb KeyedStream[K, B], assigner WindowAssigner, fn CoGroupFunc[K, A, B, OUT]) Stream[OUT] {
	s := coGroupNode(ka, kb, assigner, "CoGroup", &coGroupFn[K, A, B, OUT]{fn: fn})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: CoGroup needs a function, got nil", s.n.Name))
	}
	return s
}

// WindowJoin is the inner join of two keyed streams per window of
// assigner (Flink's window join): for every key and window, fn is called
// with every pair of a record of ka and a record of kb in it, when the
// window fires.
func WindowJoin[K comparable, A, B, OUT any](ka KeyedStream[K, A], kb KeyedStream[K, B], assigner WindowAssigner, fn func(a A, b B) OUT) Stream[OUT] {
	s := coGroupNode(ka, kb, assigner, "WindowJoin", &coGroupFn[K, A, B, OUT]{fn: func(_ K, _ TimeWindow, as []A, bs []B, out Collector[OUT]) error {
		for _, a := range as {
			for _, b := range bs {
				out.Collect(fn(a, b))
			}
		}
		return nil
	}})
	if fn == nil {
		s.env.setErr(fmt.Errorf("operator %s: WindowJoin needs a function, got nil", s.n.Name))
	}
	return s
}

func coGroupNode[K comparable, A, B, OUT any](ka KeyedStream[K, A], kb KeyedStream[K, B], assigner WindowAssigner, kind string, fn *coGroupFn[K, A, B, OUT]) Stream[OUT] {
	keyA, keyB := ka.key, kb.key
	ta := Map(ka.s, func(a A) joinSide[A, B] { return joinSide[A, B]{L: a} }).Name(kind + " first input")
	tb := Map(kb.s, func(b B) joinSide[A, B] { return joinSide[A, B]{R: b, Right: true} }).Name(kind + " second input")
	keyed := KeyByWithCodec(Union(ta, tb), func(r joinSide[A, B]) K {
		if r.Right {
			return keyB(r.R)
		}
		return keyA(r.L)
	}, ka.codec)
	s := WindowProcess(Window(keyed, assigner), ProcessWindowFunction[K, joinSide[A, B], OUT](fn))
	s.n.Kind = kind
	return s.Name(kind)
}

// coGroupFn splits a window's records by side; each subtask has its own
// copy (perSubtask), so the slices are reused per subtask.
type coGroupFn[K comparable, A, B, OUT any] struct {
	fn CoGroupFunc[K, A, B, OUT]
	as []A
	bs []B
}

func (f *coGroupFn[K, A, B, OUT]) Process(ctx *WindowContext[K], elems []joinSide[A, B], out Collector[OUT]) error {
	f.as, f.bs = f.as[:0], f.bs[:0]
	for _, e := range elems {
		if e.Right {
			f.bs = append(f.bs, e.R)
		} else {
			f.as = append(f.as, e.L)
		}
	}
	err := f.fn(ctx.Key(), ctx.Window(), f.as, f.bs, out)
	clear(f.as)
	clear(f.bs)
	return err
}
