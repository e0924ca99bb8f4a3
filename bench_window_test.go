package weir_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/state/pebblestate"
)

// benchEvent is event off of the window benchmarks: 1000 keys, 10 events
// per millisecond of event time, in order — a 1 s window of a key holds 10
// records.
func benchEvent(_ int, off int64) ev { return ev{Key: int(off % 1000), Off: off, TS: off / 10} }

// BenchmarkWindowCount is a per-key count in 1 s tumbling event-time
// windows (an aggregate: one accumulator per key and window), over 1000
// keys, with parallelism 1 end to end, on the heap and in pebble; and the
// same count written by hand (a Go map per window, no runtime) as the
// baseline.
//
//	go test -run X -bench WindowCount -benchtime 2000000x -count 3 .
func BenchmarkWindowCount(b *testing.B) {
	b.Run("heap", func(b *testing.B) { benchWindowCount(b) })
	b.Run("pebble", func(b *testing.B) {
		benchWindowCount(b, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: b.TempDir()})))
	})
	b.Run("by-hand", func(b *testing.B) {
		b.ReportAllocs()
		start := time.Now()
		counts := map[int]int64{}
		var windowEnd, emitted int64 = 1000, 0
		for off := range int64(b.N) {
			e := benchEvent(0, off)
			if e.TS >= windowEnd { // the watermark passed the window: emit it
				for k, c := range counts {
					emitted += int64(k) + c
				}
				clear(counts)
				windowEnd += 1000
			}
			counts[e.Key]++
		}
		for k, c := range counts {
			emitted += int64(k) + c
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		if emitted == 0 {
			b.Fatal("nothing counted")
		}
	})
}

func benchWindowCount(b *testing.B, extra ...weir.Option) {
	env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(1)}, extra...)...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(1, int64(b.N), benchEvent),
		weir.ForMonotonousTimestamps[ev]().WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "gen")
	counts := weir.WindowAggregate(weir.Window(weir.KeyBy(src, func(e ev) int { return e.Key }), weir.TumblingEventTimeWindows(time.Second)),
		weir.Aggregator[ev, int64, int64](countAgg{}))
	counts.SinkTo(weir.DiscardSink[int64]{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := env.Execute(context.Background(), "window-count"); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkEventTimeTimers registers an event-time timer per record (1000
// keys, 10 records per ms, each timer 100 ms ahead) and fires them all as the
// watermark passes: the timer service's add and poll on the heap and in
// pebble.
func BenchmarkEventTimeTimers(b *testing.B) {
	b.Run("heap", func(b *testing.B) { benchTimers(b) })
	b.Run("pebble", func(b *testing.B) {
		benchTimers(b, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: b.TempDir()})))
	})
}

type benchTimerFn struct{}

func (benchTimerFn) ProcessElement(ctx *weir.KeyedContext[int], e ev, _ weir.Collector[int64]) error {
	ctx.RegisterEventTimeTimer(e.TS + 100)
	return nil
}

func (benchTimerFn) OnTimer(_ *weir.KeyedContext[int], ts int64, out weir.Collector[int64]) error {
	out.Collect(ts)
	return nil
}

func benchTimers(b *testing.B, extra ...weir.Option) {
	env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(1)}, extra...)...)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(1, int64(b.N), benchEvent),
		weir.ForMonotonousTimestamps[ev]().WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "gen")
	weir.Process(weir.KeyBy(src, func(e ev) int { return e.Key }), weir.KeyedProcessFunction[int, ev, int64](benchTimerFn{})).
		SinkTo(weir.DiscardSink[int64]{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := env.Execute(context.Background(), "timers"); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkWindowCount10k is the shape: a per-key count in 1 s
// tumbling event-time windows over 10k keys, parallelism 2 end to end
// (two generator partitions, a keyBy shuffle, two window subtasks),
// exactly-once checkpoints every second, state on the heap or in pebble.
// Event time advances 5000 records per millisecond, so at about 5 M
// events/s event time keeps pace with the clock (as in a live job): a
// window holds 500 records of each key and the periodic watermark (every
// 200 ms) closes each window soon after its end.
//
//	go test -run X -bench WindowCount10k -benchtime 20000000x -count 3 .
func BenchmarkWindowCount10k(b *testing.B) {
	b.Run("heap", func(b *testing.B) { benchWindowCount10k(b) })
	b.Run("pebble", func(b *testing.B) {
		benchWindowCount10k(b, weir.StateBackend(pebblestate.New(pebblestate.Options{Dir: b.TempDir()})))
	})
}

func benchWindowCount10k(b *testing.B, extra ...weir.Option) {
	const keys = 10_000
	env := weir.NewEnvironment(append([]weir.Option{weir.Parallelism(2),
		weir.Checkpointing(time.Second, weir.ExactlyOnce), weir.CheckpointStorage(b.TempDir())}, extra...)...)
	perPartition := int64(b.N/2 + 1)
	src := weir.FromSourceWithWatermarks(env, weir.Generator(2, perPartition, func(p int, off int64) ev {
		n := off*2 + int64(p)
		return ev{Key: int(n % keys), Off: n, TS: n / 5000}
	}), weir.ForMonotonousTimestamps[ev]().WithTimestampAssigner(func(e ev, _ int64) int64 { return e.TS }), "gen")
	counts := weir.WindowAggregate(weir.Window(weir.KeyBy(src, func(e ev) int { return e.Key }), weir.TumblingEventTimeWindows(time.Second)),
		weir.Aggregator[ev, int64, int64](countAgg{}))
	var windows atomic.Int64
	counts.SinkTo(countingSink{&windows})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	job, err := env.Start(context.Background(), "window-count-10k")
	if err != nil {
		b.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	if windows.Load() == 0 {
		b.Fatal("no window fired")
	}
	b.ReportMetric(float64(2*perPartition)/el.Seconds(), "events/s")
	b.ReportMetric(float64(len(job.Checkpoints())), "checkpoints")
}

// countingSink counts the records it is given.
type countingSink struct{ n *atomic.Int64 }

func (s countingSink) CreateWriter(weir.SinkContext) (weir.SinkWriter[int64], error) { return s, nil }
func (s countingSink) Write(int64) error                                             { s.n.Add(1); return nil }
func (s countingSink) Close() error                                                  { return nil }
