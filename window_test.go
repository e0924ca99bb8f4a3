package weir_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
	"github.com/weirstream/weir/restart"
	"github.com/weirstream/weir/state/pebblestate"
)

// ev is event Off of key Key at event time TS.
type ev struct {
	Key int
	Off int64
	TS  int64
}

// winCount is what the window tests emit: a key's count in a window.
type winCount struct {
	Key        int
	Start, End int64
	Count      int64
}

func cmpWinCount(a, b winCount) int {
	return cmp.Or(cmp.Compare(a.Key, b.Key), cmp.Compare(a.Start, b.Start), cmp.Compare(a.End, b.End), cmp.Compare(a.Count, b.Count))
}

// punctuated emits a watermark after every record: the largest timestamp
// seen minus bound. With one source subtask it makes lateness decisions
// deterministic, so a simple model can predict every window firing.
type punctuated struct{ bound, max int64 }

func (g *punctuated) OnEvent(_ ev, ts int64, out weir.WatermarkOutput) {
	g.max = max(g.max, ts)
	out.EmitWatermark(g.max - g.bound)
}
func (g *punctuated) OnPeriodicEmit(weir.WatermarkOutput) {}

func punctuatedStrategy(bound int64) weir.WatermarkStrategy[ev] {
	return weir.ForGenerator(func() weir.WatermarkGenerator[ev] {
		return &punctuated{bound: bound, max: math.MinInt64 / 2}
	}).WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS })
}

// jittered is event off: keys round robin over 5, timestamps 10 ms apart
// with up to 300 ms of disorder, and every 37th event 5 s late.
func jittered(off int64) ev {
	r := rand.New(rand.NewPCG(uint64(off), 7))
	ts := 100_000 + off*10 - r.Int64N(300)
	if off%37 == 36 {
		ts -= 5000
	}
	return ev{Key: int(off % 5), Off: off, TS: ts}
}

type countAgg struct{}

func (countAgg) CreateAccumulator() int64  { return 0 }
func (countAgg) Add(_ ev, acc int64) int64 { return acc + 1 }
func (countAgg) Result(acc int64) int64    { return acc }
func (countAgg) Merge(a, b int64) int64    { return a + b }
func withWindow(ctx *weir.WindowContext[int], counts []int64, out weir.Collector[winCount]) error {
	w := ctx.Window()
	out.Collect(winCount{Key: ctx.Key(), Start: w.Start, End: w.End, Count: counts[0]})
	return nil
}

// tumblingModel predicts a tumbling count window's output under Flink's
// semantics, for events that arrive in order with a punctuated watermark:
// a window fires when the watermark passes its end, and again for every
// record that arrives within the allowed lateness; a record for a window
// whose lateness passed is late.
func tumblingModel(events []ev, size, bound, lateness int64) (fired []winCount, late []ev) {
	type kw struct {
		key   int
		start int64
	}
	count := map[kw]int64{}
	isFired := map[kw]bool{}
	wm, maxTS := int64(math.MinInt64), int64(math.MinInt64/2)
	advance := func(to int64) {
		if to <= wm {
			return
		}
		wm = to
		var keys []kw
		for k := range count {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i].start < keys[j].start })
		for _, k := range keys {
			end := k.start + size
			if !isFired[k] && end-1 <= wm {
				fired = append(fired, winCount{k.key, k.start, end, count[k]})
				isFired[k] = true
			}
			if end-1+lateness <= wm {
				delete(count, k)
				delete(isFired, k)
			}
		}
	}
	for _, e := range events {
		maxTS = max(maxTS, e.TS)
		advance(maxTS - bound)
		start := e.TS - ((e.TS%size)+size)%size
		k := kw{e.Key, start}
		if start+size-1+lateness <= wm {
			late = append(late, e)
			continue
		}
		count[k]++
		if isFired[k] {
			fired = append(fired, winCount{k.key, k.start, k.start + size, count[k]})
		}
	}
	advance(math.MaxInt64)
	return fired, late
}

// Tumbling event-time windows with allowed lateness fire when the
// watermark passes their end, fire again for records within the lateness,
// and send later records to the late side output: the output equals a
// model of Flink's semantics, record for record, on the heap and in
// pebble.
func TestTumblingWindowsLateness(t *testing.T) {
	for _, backend := range []string{"heap", "pebble"} {
		t.Run(backend, func(t *testing.T) {
			const n, size, bound, lateness = 3000, 1000, 200, 500
			opts := []weir.Option{weir.Parallelism(3), weir.RestartStrategy(restart.None())}
			if backend == "pebble" {
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			}
			env := weir.NewEnvironment(opts...)
			src := weir.FromSourceWithWatermarks(env, weir.Generator(1, n, func(_ int, off int64) ev { return jittered(off) }),
				punctuatedStrategy(bound), "events").SetParallelism(1)
			lateTag := weir.NewOutputTag[ev]("late")
			win := weir.Window(weir.KeyBy(src, func(e ev) int { return e.Key }), weir.TumblingEventTimeWindows(size*time.Millisecond)).
				AllowedLateness(lateness * time.Millisecond).SideOutputLateData(lateTag)
			counts := weir.WindowAggregateProcess(win, weir.Aggregator[ev, int64, int64](countAgg{}), weir.ProcessWindowFunc[int, int64, winCount](withWindow))
			sink := weir.NewCollectSink[winCount]()
			counts.SinkTo(sink)
			lateSink := weir.NewCollectSink[ev]()
			weir.GetSideOutput(counts, lateTag).SinkTo(lateSink)
			if err := env.Execute(context.Background(), "tumbling"); err != nil {
				t.Fatal(err)
			}
			var events []ev
			for off := range int64(n) {
				events = append(events, jittered(off))
			}
			wantFired, wantLate := tumblingModel(events, size, bound, lateness)
			if len(wantLate) == 0 || len(wantFired) <= 5 {
				t.Fatalf("the model predicts %d late records and %d firings: the test proves nothing", len(wantLate), len(wantFired))
			}
			refired := len(wantFired) - len(slices.CompactFunc(slices.SortedFunc(slices.Values(wantFired), cmpWinCount), func(a, b winCount) bool {
				return a.Key == b.Key && a.Start == b.Start
			}))
			if refired == 0 {
				t.Fatal("no window fired twice (lateness): the test proves nothing")
			}
			if got, want := slices.SortedFunc(slices.Values(sink.Committed()), cmpWinCount), slices.SortedFunc(slices.Values(wantFired), cmpWinCount); !slices.Equal(got, want) {
				t.Errorf("window firings differ from the model: got %d, want %d\n got %v\nwant %v", len(got), len(want), head(got), head(want))
			}
			byOff := func(a, b ev) int { return cmp.Compare(a.Off, b.Off) }
			if got, want := slices.SortedFunc(slices.Values(lateSink.Committed()), byOff), slices.SortedFunc(slices.Values(wantLate), byOff); !slices.Equal(got, want) {
				t.Errorf("late side output: got %d records, want %d", len(got), len(want))
			}
			t.Logf("%d firings (%d again for late records), %d late records", len(wantFired), refired, len(wantLate))
		})
	}
}

func head[T any](xs []T) []T { return xs[:min(len(xs), 8)] }

// sumByKey is a reducing window function's record.
type sumByKey struct {
	Key   int
	Sum   int64
	First int64 // the smallest offset summed
}

// Sliding, session, count and all-windows produce, for in-order data with
// no late record, exactly the windows a direct computation gives.
func TestWindowAssigners(t *testing.T) {
	const n = 2000
	// Ascending timestamps with gaps: every 100th event starts after a
	// pause of 3 s, so sessions with a 1 s gap end there.
	tsOf := func(off int64) int64 { return 50_000 + off*7 + (off/100)*3000 }
	mk := func(off int64) ev { return ev{Key: int(off % 4), Off: off, TS: tsOf(off)} }
	var events []ev
	for off := range int64(n) {
		events = append(events, mk(off))
	}
	env := weir.NewEnvironment(weir.Parallelism(2), weir.AutoWatermarkInterval(time.Millisecond), weir.RestartStrategy(restart.None()))
	src := weir.FromSourceWithWatermarks(env, weir.Generator(2, n/2, func(p int, off int64) ev { return mk(off*2 + int64(p)) }).WithRate(20000),
		weir.ForBoundedOutOfOrderness[ev](time.Second).WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "events")
	keyed := weir.KeyBy(src, func(e ev) int { return e.Key })
	agg := weir.Aggregator[ev, int64, int64](countAgg{})

	sliding := weir.NewCollectSink[winCount]()
	weir.WindowAggregateProcess(weir.Window(keyed, weir.SlidingEventTimeWindows(2*time.Second, 500*time.Millisecond)), agg,
		weir.ProcessWindowFunc[int, int64, winCount](withWindow)).SinkTo(sliding)

	sessions := weir.NewCollectSink[winCount]()
	weir.WindowProcess(weir.Window(keyed, weir.EventTimeSessionWindows(time.Second)),
		weir.ProcessWindowFunc[int, ev, winCount](func(ctx *weir.WindowContext[int], elems []ev, out weir.Collector[winCount]) error {
			w := ctx.Window()
			for i := 1; i < len(elems); i++ {
				if elems[i].TS < elems[i-1].TS {
					return fmt.Errorf("session %v: records out of arrival order", w)
				}
			}
			out.Collect(winCount{Key: ctx.Key(), Start: w.Start, End: w.End, Count: int64(len(elems))})
			return nil
		})).SinkTo(sessions)

	sessionAgg := weir.NewCollectSink[winCount]()
	weir.WindowAggregateProcess(weir.Window(keyed, weir.EventTimeSessionWindows(time.Second)), agg,
		weir.ProcessWindowFunc[int, int64, winCount](withWindow)).SinkTo(sessionAgg)

	counted := weir.NewCollectSink[sumByKey]()
	sums := weir.Map(src, func(e ev) sumByKey { return sumByKey{Key: e.Key, Sum: e.Off, First: e.Off} })
	weir.CountWindow(weir.KeyBy(sums, func(s sumByKey) int { return s.Key }), 50).Reduce(func(a, b sumByKey) sumByKey {
		return sumByKey{Key: a.Key, Sum: a.Sum + b.Sum, First: min(a.First, b.First)}
	}).SinkTo(counted)

	all := weir.NewCollectSink[int64]()
	weir.WindowAggregate(weir.WindowAll(src, weir.TumblingEventTimeWindows(time.Second)), agg).SinkTo(all)

	if err := env.Execute(context.Background(), "assigners"); err != nil {
		t.Fatal(err)
	}

	// Sliding: every window of 2 s starting at a multiple of 500 ms that
	// holds a record of the key.
	want := map[winCount]int64{}
	for _, e := range events {
		for start := e.TS - e.TS%500; start > e.TS-2000; start -= 500 {
			want[winCount{Key: e.Key, Start: start, End: start + 2000}]++
		}
	}
	check := func(name string, got []winCount, want map[winCount]int64) {
		t.Helper()
		var w []winCount
		for k, c := range want {
			k.Count = c
			w = append(w, k)
		}
		if g, w := slices.SortedFunc(slices.Values(got), cmpWinCount), slices.SortedFunc(slices.Values(w), cmpWinCount); !slices.Equal(g, w) {
			t.Errorf("%s: got %d windows, want %d\n got %v\nwant %v", name, len(g), len(w), head(g), head(w))
		}
	}
	check("sliding", sliding.Committed(), want)

	// Sessions: per key, records closer than 1 s apart.
	want = map[winCount]int64{}
	for k := range 4 {
		var cur winCount
		for _, e := range events {
			if e.Key != k {
				continue
			}
			if cur.Count > 0 && e.TS < cur.End {
				cur.End = e.TS + 1000
				cur.Count++
				continue
			}
			if cur.Count > 0 {
				want[winCount{Key: k, Start: cur.Start, End: cur.End}] = cur.Count
			}
			cur = winCount{Key: k, Start: e.TS, End: e.TS + 1000, Count: 1}
		}
		want[winCount{Key: k, Start: cur.Start, End: cur.End}] = cur.Count
	}
	if len(want) < 4*15 {
		t.Fatalf("only %d sessions expected: the test proves nothing", len(want))
	}
	check("sessions (process)", sessions.Committed(), want)
	check("sessions (aggregate)", sessionAgg.Committed(), want)

	// Count windows: every 50 records of a key, whatever their order; the
	// remainder never fires (a global window).
	got := counted.Committed()
	perKey := map[int]int{}
	var total int64
	for _, s := range got {
		perKey[s.Key]++
		total += s.Sum
	}
	for k := range 4 {
		if perKey[k] != n/4/50 {
			t.Errorf("count windows of key %d: %d, want %d", k, perKey[k], n/4/50)
		}
	}
	if total != int64(n)*int64(n-1)/2 {
		t.Errorf("count windows summed %d, want %d", total, int64(n)*int64(n-1)/2)
	}

	// WindowAll: one count per second over all keys.
	wantAll := map[int64]int64{}
	for _, e := range events {
		wantAll[e.TS-e.TS%1000]++
	}
	var wantCounts []int64
	for _, c := range wantAll {
		wantCounts = append(wantCounts, c)
	}
	if got, want := slices.Sorted(slices.Values(all.Committed())), slices.Sorted(slices.Values(wantCounts)); !slices.Equal(got, want) {
		t.Errorf("window all: got %v, want %v", got, want)
	}
}

// timerFn counts records per key and registers an event-time timer 100 ms
// after each; OnTimer emits the count and the timer. At the end of the
// input, Finish emits how many timers the subtask fired.
type timerFn struct {
	cnt   weir.ValueState[int64]
	fired int64
}

type timerOut struct {
	Key, Count int64
	At         int64
	Domain     weir.TimeDomain
	Finish     bool
}

func (f *timerFn) Open(ctx *weir.KeyedContext[int64]) (err error) {
	f.cnt, err = weir.GetValueState[int64](ctx, "count")
	return err
}

func (f *timerFn) ProcessElement(ctx *weir.KeyedContext[int64], e ev, _ weir.Collector[timerOut]) error {
	c, _ := f.cnt.Value()
	f.cnt.Update(c + 1)
	ts, _ := ctx.Timestamp()
	ctx.RegisterEventTimeTimer(ts + 100)
	ctx.RegisterEventTimeTimer(ts + 100) // a second registration is the same timer
	if e.Off%10 == 0 {
		ctx.RegisterEventTimeTimer(ts + 50)
		ctx.DeleteEventTimeTimer(ts + 50)
	}
	return nil
}

func (f *timerFn) OnTimer(ctx *weir.KeyedContext[int64], ts int64, out weir.Collector[timerOut]) error {
	c, _ := f.cnt.Value()
	if ctx.CurrentWatermark() < ts {
		return fmt.Errorf("timer %d fired at watermark %d", ts, ctx.CurrentWatermark())
	}
	if got, ok := ctx.Timestamp(); !ok || got != ts {
		return fmt.Errorf("timer %d: the timestamp in OnTimer is %d", ts, got)
	}
	f.fired++
	out.Collect(timerOut{Key: ctx.CurrentKey(), Count: c, At: ts, Domain: ctx.TimeDomain()})
	return nil
}

func (f *timerFn) Finish(_ *weir.KeyedContext[int64], out weir.Collector[timerOut]) error {
	out.Collect(timerOut{Key: -1, Count: f.fired, Finish: true})
	return nil
}

// Event-time timers fire once per (key, timestamp) when the watermark
// passes them, in timestamp order per key, with the key's state; deleted
// timers do not fire; at the end of the input every timer fires, then
// Finish runs, and what it emits is committed by the final checkpoint of
// an exactly-once job.
func TestEventTimeTimersAndFinish(t *testing.T) {
	const n = 1000
	env := weir.NewEnvironment(weir.Parallelism(2), weir.AutoWatermarkInterval(2*time.Millisecond),
		weir.Checkpointing(20*time.Millisecond, weir.ExactlyOnce), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.None()))
	// Key = off%3; per key timestamps 30 ms apart, so its timers are
	// distinct and each fires after exactly one more record of the key
	// arrived... or at the end.
	mk := func(off int64) ev { return ev{Key: int(off % 3), Off: off, TS: 10_000 + off*10} }
	src := weir.FromSourceWithWatermarks(env, weir.Generator(1, n, func(_ int, off int64) ev { return mk(off) }).WithRate(5000),
		weir.ForMonotonousTimestamps[ev]().WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "events")
	out := weir.Process(weir.KeyBy(src, func(e ev) int64 { return int64(e.Key) }), weir.KeyedProcessFunction[int64, ev, timerOut](&timerFn{}))
	sink := weir.NewCollectSink[timerOut]()
	out.SinkTo(sink)
	if err := env.Execute(context.Background(), "timers"); err != nil {
		t.Fatal(err)
	}
	var fired, finished int64
	seen := map[[2]int64]bool{}
	for _, o := range sink.Committed() {
		if o.Finish {
			finished += o.Count
			continue
		}
		fired++
		if o.Domain != weir.EventTime {
			t.Errorf("timer %+v: domain %v", o, o.Domain)
		}
		k := [2]int64{o.Key, o.At}
		if seen[k] {
			t.Errorf("timer %+v fired twice", o)
		}
		seen[k] = true
		// The watermark passed o.At, so every record of the key with a
		// timestamp up to o.At had arrived (one in-order partition).
		var want int64
		for off := int64(0); off < n; off++ {
			if e := mk(off); int64(e.Key) == o.Key && e.TS <= o.At {
				want++
			}
		}
		if (o.At-10_000-100)%10 != 0 || o.Count < want {
			t.Errorf("timer %+v: count %d, want at least %d", o, o.Count, want)
		}
	}
	if fired != n {
		t.Errorf("%d timers fired, want %d (one per record)", fired, n)
	}
	if finished != n {
		t.Errorf("Finish reported %d timers fired over the subtasks, want %d: Finish output missing from the committed output?", finished, n)
	}
}

// procTimerFn registers a processing-time timer 20 ms ahead for every
// 100th record and emits when it fires.
type procTimerFn struct{}

func (procTimerFn) ProcessElement(ctx *weir.KeyedContext[int64], e ev, _ weir.Collector[timerOut]) error {
	if e.Off%100 == 0 {
		ctx.RegisterProcessingTimeTimer(ctx.CurrentProcessingTime() + 20)
	}
	return nil
}

func (procTimerFn) OnTimer(ctx *weir.KeyedContext[int64], ts int64, out weir.Collector[timerOut]) error {
	if now := ctx.CurrentProcessingTime(); now < ts {
		return fmt.Errorf("processing-time timer %d fired at %d", ts, now)
	}
	if _, ok := ctx.Timestamp(); ok {
		return fmt.Errorf("processing-time timer %d: a record timestamp is set", ts)
	}
	out.Collect(timerOut{Key: ctx.CurrentKey(), At: ts, Domain: ctx.TimeDomain()})
	return nil
}

// Processing-time timers fire on the subtask's goroutine once the clock
// passes them, with their key, in a job that runs long enough.
func TestProcessingTimeTimers(t *testing.T) {
	const n = 2000
	env := weir.NewEnvironment(weir.Parallelism(2), weir.RestartStrategy(restart.None()))
	// 2000 records at 4000/s: half a second, and the last registration 25
	// records (6 ms) before the end... so stop registering early enough:
	// records from 1800 on register nothing.
	src := weir.FromSource(env, weir.Generator(1, n, func(_ int, off int64) ev {
		if off >= 1800 {
			off++ // never a multiple of 100 past 1800
		}
		return ev{Key: int(off % 2), Off: off}
	}).WithRate(4000), "events")
	out := weir.Process(weir.KeyBy(src, func(e ev) int64 { return int64(e.Key) }), weir.KeyedProcessFunction[int64, ev, timerOut](procTimerFn{}))
	sink := weir.NewCollectSink[timerOut]()
	out.SinkTo(sink)
	if err := env.Execute(context.Background(), "proc-timers"); err != nil {
		t.Fatal(err)
	}
	got := sink.Committed()
	if len(got) < 15 {
		t.Fatalf("%d processing-time timers fired, want about 18", len(got))
	}
	for _, o := range got {
		if o.Domain != weir.ProcessingTime || o.Key != 0 {
			t.Errorf("timer %+v", o)
		}
	}
}

// A process function that registers a timer without OnTimer fails the job
// with an error that says so.
func TestTimerWithoutOnTimer(t *testing.T) {
	env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
	src := weir.FromSlice(env, []int{1, 2, 3})
	weir.Process(weir.KeyBy(src, func(i int) int { return i }), weir.ProcessFunc[int, int, int](func(ctx *weir.KeyedContext[int], in int, out weir.Collector[int]) error {
		ctx.RegisterEventTimeTimer(5)
		return nil
	})).Print()
	err := env.Execute(context.Background(), "no-ontimer")
	if err == nil || !strings.Contains(err.Error(), "does not implement OnTimer") {
		t.Fatalf("err = %v", err)
	}
}

// Records without timestamps in event-time windows fail the job with an
// error that names the operator and says what to do.
func TestEventTimeWindowWithoutTimestamps(t *testing.T) {
	env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
	src := weir.FromSlice(env, []ev{{Key: 1}})
	weir.Window(weir.KeyBy(src, func(e ev) int { return e.Key }), weir.TumblingEventTimeWindows(time.Second)).
		Reduce(func(a, b ev) ev { return a }).Name("per-key-totals").Print()
	err := env.Execute(context.Background(), "no-timestamps")
	if err == nil || !strings.Contains(err.Error(), "WatermarkStrategy") || !strings.Contains(err.Error(), "operator per-key-totals") {
		t.Fatalf("want an error naming operator per-key-totals and a WatermarkStrategy, got %v", err)
	}
}

// Bad window configurations are errors at Execute, not panics, and name
// the window operator (by the name it was given after the window
// function) and what is wrong.
func TestWindowConfigErrors(t *testing.T) {
	reduce := func(a, b ev) ev { return a }
	for name, tc := range map[string]struct {
		build func(weir.KeyedStream[int, ev]) weir.Stream[ev]
		want  string
	}{
		"zero size": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.TumblingEventTimeWindows(0)).Reduce(reduce)
		}, "tumbling windows need a size of at least 1ms, got 0ms"},
		"negative size": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.TumblingProcessingTimeWindows(-time.Second)).Reduce(reduce)
		}, "need a size of at least 1ms, got -1000ms"},
		"zero slide": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.SlidingEventTimeWindows(time.Second, 0)).Reduce(reduce)
		}, "need a slide of at least 1ms, got 0ms"},
		"negative slide": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.SlidingEventTimeWindows(time.Second, -time.Millisecond)).Reduce(reduce)
		}, "need a slide of at least 1ms, got -1ms"},
		"zero session gap": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.EventTimeSessionWindows(0)).Reduce(reduce)
		}, "session windows need a gap of at least 1ms, got 0ms"},
		"session aggregate without merge": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			s := weir.WindowAggregate(weir.Window(k, weir.EventTimeSessionWindows(time.Second)), weir.Aggregator[ev, int64, int64](noMerge{}))
			return weir.Map(s.Name("bad-window"), func(int64) ev { return ev{} })
		}, "has no Merge"},
		"negative lateness": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.Window(k, weir.TumblingEventTimeWindows(time.Second)).AllowedLateness(-time.Second).Reduce(reduce)
		}, "allowed lateness must not be negative"},
		"zero count": {func(k weir.KeyedStream[int, ev]) weir.Stream[ev] {
			return weir.CountWindow(k, 0).Reduce(reduce)
		}, "a count window needs at least 1 record, got 0"},
	} {
		t.Run(name, func(t *testing.T) {
			env := weir.NewEnvironment(weir.RestartStrategy(restart.None()))
			out := tc.build(weir.KeyBy(weir.FromSlice(env, []ev{{Key: 1}}), func(e ev) int { return e.Key }))
			if name != "session aggregate without merge" {
				out = out.Name("bad-window")
			}
			out.Print()
			err := env.Execute(context.Background(), "bad")
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "operator bad-window") {
				t.Fatalf("want an error naming operator bad-window and containing %q, got %v", tc.want, err)
			}
			if env.Err() == nil {
				t.Fatal("Environment.Err does not report the definition error")
			}
		})
	}
}

type noMerge struct{}

func (noMerge) CreateAccumulator() int64  { return 0 }
func (noMerge) Add(_ ev, acc int64) int64 { return acc + 1 }
func (noMerge) Result(acc int64) int64    { return acc }

// A windowed count with failures injected (exactly once, into the
// collecting sink) commits the same windows as the model: each window
// once, with its exact count, on the heap and in pebble; and in pebble
// with an entry cache of 1 KiB, which writes its entries back to the
// database every few records, so that checkpoints are taken, and restored
// windows get their next records, with the cache in every state.
func TestWindowsFailureInjection(t *testing.T) {
	for _, backend := range []string{"heap", "pebble", "pebble-tiny-cache"} {
		t.Run(backend, func(t *testing.T) {
			const n, size = 6000, 200
			inj := sinktest.NewInjector(3, 6)
			opts := []weir.Option{weir.Parallelism(2), weir.Checkpointing(15*time.Millisecond, weir.ExactlyOnce),
				weir.CheckpointStorage(t.TempDir()), weir.RestartStrategy(restart.FixedDelay(100, time.Millisecond)),
				weir.AutoWatermarkInterval(2 * time.Millisecond)}
			switch backend {
			case "pebble":
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
			case "pebble-tiny-cache":
				opts = append(opts, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir(), EntryCacheSize: 1 << 10})))
			}
			env := weir.NewEnvironment(opts...)
			// In-order timestamps per partition: nothing is ever late, so
			// a restore (which restarts watermarks) cannot change results.
			mk := func(p int, off int64) ev { return ev{Key: int(off % 7), Off: off*2 + int64(p), TS: 1_000 + off*3} }
			src := weir.FromSourceWithWatermarks(env, weir.Generator(2, n/2, mk).WithRate(15000),
				weir.ForBoundedOutOfOrderness[ev](0).WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "events").UID("src")
			flaky := weir.MapErr(src, func(e ev) (ev, error) { return e, inj.Maybe("map", 0.0008) }).UID("flaky")
			counts := weir.WindowAggregateProcess(weir.Window(weir.KeyBy(flaky, func(e ev) int { return e.Key }), weir.TumblingEventTimeWindows(size*time.Millisecond)),
				weir.Aggregator[ev, int64, int64](countAgg{}), weir.ProcessWindowFunc[int, int64, winCount](withWindow)).UID("windows")
			sink := weir.NewCollectSink[winCount]()
			counts.SinkTo(sink).UID("sink")
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			job, err := env.Start(ctx, "windows-failures")
			if err != nil {
				t.Fatal(err)
			}
			if err := job.Wait(); err != nil {
				t.Fatal(err)
			}
			if job.Restarts() == 0 {
				t.Fatal("no failure was injected: the test proves nothing")
			}
			want := map[winCount]int64{}
			for p := range 2 {
				for off := range int64(n / 2) {
					e := mk(p, off)
					start := e.TS - e.TS%size
					want[winCount{Key: e.Key, Start: start, End: start + size}]++
				}
			}
			var w []winCount
			for k, c := range want {
				k.Count = c
				w = append(w, k)
			}
			if got, w := slices.SortedFunc(slices.Values(sink.Committed()), cmpWinCount), slices.SortedFunc(slices.Values(w), cmpWinCount); !slices.Equal(got, w) {
				t.Errorf("after %d restarts: got %d windows, want %d\n got %v\nwant %v", job.Restarts(), len(got), len(w), head(got), head(w))
			}
			t.Logf("%d restarts, %d windows", job.Restarts(), len(w))
		})
	}
}

// Windows survive rescaling: a job of tumbling and session windows runs
// at parallelism 2, then 4, then 1, each stage restoring the previous
// one's latest checkpoint; the windows committed over all stages are
// exactly the model's (each once, with its exact count) — contents, merged
// sessions and timers moved with their keys.
func TestWindowsRescale(t *testing.T) {
	t.Run("heap", func(t *testing.T) { testWindowsRescale(t, 2000) })
	t.Run("pebble", func(t *testing.T) {
		testWindowsRescale(t, 2000, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: t.TempDir()})))
	})
}

// testWindowsRescale runs limit records per partition: slowly (200/s) in
// the stages that are cancelled after three checkpoints, so that they
// cannot reach the end of the input even when a loaded machine makes
// pebble's checkpoints take seconds, and at full speed in the last.
func testWindowsRescale(t *testing.T, limit int64, backend ...weir.Option) {
	dir := t.TempDir()
	// Partition p's records: keys 0..9, timestamps 5 ms apart, and a
	// pause of 2 s every 150 records (a session boundary).
	mk := func(p int, off int64) ev {
		return ev{Key: int((off + int64(p)) % 10), Off: off*4 + int64(p), TS: 1_000 + off*5 + (off/150)*2000}
	}
	tumbling := weir.NewCollectSink[winCount]()
	sessions := weir.NewCollectSink[winCount]()
	job := func(p int, rate float64, opts ...weir.Option) *weir.Environment {
		base := []weir.Option{weir.Parallelism(p), weir.Checkpointing(10*time.Millisecond, weir.ExactlyOnce),
			weir.CheckpointStorage(dir), weir.RestartStrategy(restart.None()), weir.AutoWatermarkInterval(2 * time.Millisecond)}
		env := weir.NewEnvironment(append(append(base, backend...), opts...)...)
		src := weir.FromSourceWithWatermarks(env, weir.Generator(4, limit, mk).WithRate(rate),
			weir.ForMonotonousTimestamps[ev]().WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "gen").UID("gen")
		keyed := weir.KeyBy(src, func(e ev) int { return e.Key })
		agg := weir.Aggregator[ev, int64, int64](countAgg{})
		weir.WindowAggregateProcess(weir.Window(keyed, weir.TumblingEventTimeWindows(100*time.Millisecond)), agg,
			weir.ProcessWindowFunc[int, int64, winCount](withWindow)).UID("tumbling").SinkTo(tumbling).UID("tumbling-sink")
		weir.WindowAggregateProcess(weir.Window(keyed, weir.EventTimeSessionWindows(time.Second)), agg,
			weir.ProcessWindowFunc[int, int64, winCount](withWindow)).UID("sessions").SinkTo(sessions).UID("sessions-sink")
		return env
	}
	for i, p := range []int{2, 4, 1} {
		var opts []weir.Option
		if i > 0 {
			opts = append(opts, weir.Restore("latest"))
		}
		rate := 200.0
		if i == 2 {
			rate = 0 // unbounded
		}
		env := job(p, rate, opts...)
		if i < 2 {
			if err := runUntilCheckpoints(env, 3); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := env.Execute(context.Background(), "windows"); err != nil {
			t.Fatal(err)
		}
	}
	// The model: per partition in order, so per key in timestamp order
	// after merging the partitions by timestamp.
	var events []ev
	for p := range 4 {
		for off := range limit {
			events = append(events, mk(p, off))
		}
	}
	slices.SortFunc(events, func(a, b ev) int { return cmp.Compare(a.TS, b.TS) })
	wantT := map[winCount]int64{}
	for _, e := range events {
		start := e.TS - e.TS%100
		wantT[winCount{Key: e.Key, Start: start, End: start + 100}]++
	}
	wantS := map[winCount]int64{}
	for k := range 10 {
		var cur winCount
		for _, e := range events {
			if e.Key != k {
				continue
			}
			if cur.Count > 0 && e.TS < cur.End {
				cur.End = max(cur.End, e.TS+1000)
				cur.Count++
				continue
			}
			if cur.Count > 0 {
				wantS[winCount{Key: k, Start: cur.Start, End: cur.End}] = cur.Count
			}
			cur = winCount{Key: k, Start: e.TS, End: e.TS + 1000, Count: 1}
		}
		wantS[winCount{Key: k, Start: cur.Start, End: cur.End}] = cur.Count
	}
	for name, c := range map[string]struct {
		got  []winCount
		want map[winCount]int64
	}{"tumbling": {tumbling.Committed(), wantT}, "sessions": {sessions.Committed(), wantS}} {
		var w []winCount
		for k, n := range c.want {
			k.Count = n
			w = append(w, k)
		}
		if got, w := slices.SortedFunc(slices.Values(c.got), cmpWinCount), slices.SortedFunc(slices.Values(w), cmpWinCount); !slices.Equal(got, w) {
			t.Errorf("%s: got %d windows, want %d\n got %v\nwant %v", name, len(got), len(w), head(got), head(w))
		}
	}
}
