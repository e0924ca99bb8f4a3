package weir_test

import (
	"context"
	"testing"
	"time"

	"github.com/weirstream/weir"
)

// BenchmarkChain measures the record path through a chain of fused
// operators in one subtask: generator -> map -> filter -> map -> sink.
func BenchmarkChain(b *testing.B) {
	env := weir.NewEnvironment(weir.Parallelism(1))
	src := weir.FromSource(env, weir.Generator(1, int64(b.N), func(_ int, off int64) int64 { return off }), "gen")
	m := weir.Map(src, func(n int64) int64 { return n * 3 })
	f := weir.Filter(m, func(n int64) bool { return n >= 0 })
	m2 := weir.Map(f, func(n int64) int64 { return n + 1 })
	m2.SinkTo(weir.DiscardSink[int64]{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	if err := env.Execute(context.Background(), "chain"); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkKeyedCount is the keyed count job: a generator with parallelism
// 2 over 10k keys, shuffled by key into a keyed count with parallelism 2,
// with checkpoints off and every second.
func BenchmarkKeyedCount(b *testing.B) {
	b.Run("checkpoints=off", func(b *testing.B) { benchKeyedCount(b, 0) })
	b.Run("checkpoints=1s", func(b *testing.B) { benchKeyedCount(b, time.Second) })
}

func benchKeyedCount(b *testing.B, interval time.Duration) {
	const keys = 10_000
	opts := []weir.Option{weir.Parallelism(2)}
	if interval > 0 {
		opts = append(opts, weir.Checkpointing(interval, weir.ExactlyOnce), weir.CheckpointStorage(b.TempDir()))
	}
	env := weir.NewEnvironment(opts...)
	perPartition := int64(b.N/2 + 1)
	src := weir.FromSource(env, weir.Generator(2, perPartition, func(p int, off int64) int64 {
		return (off*2 + int64(p)) % keys
	}), "gen")
	counts := weir.Count(weir.KeyBy(src, func(k int64) int64 { return k }))
	counts.SinkTo(weir.DiscardSink[weir.KV[int64, int64]]{})
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	job, err := env.Start(context.Background(), "keyed-count")
	if err != nil {
		b.Fatal(err)
	}
	if err := job.Wait(); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	b.ReportMetric(float64(2*perPartition)/el.Seconds(), "events/s")
	b.ReportMetric(float64(len(job.Checkpoints())), "checkpoints")
}

// BenchmarkFileSink writes b.N lines through the exactly-once file sink
// with checkpoints every second, in exactly-once and at-least-once job mode.
func BenchmarkFileSink(b *testing.B) {
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		b.Run(mode.String(), func(b *testing.B) {
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, mode), weir.CheckpointStorage(b.TempDir()))
			weir.FromSource(env, weir.Generator(2, int64(b.N/2+1), func(_ int, off int64) int64 { return off }), "gen").
				SinkTo(weir.FileSink(b.TempDir(), ".txt", weir.Lines[int64])).UID("files")
			b.ResetTimer()
			start := time.Now()
			if err := env.Execute(context.Background(), "files"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(2*(b.N/2+1))/time.Since(start).Seconds(), "rows/s")
		})
	}
}
