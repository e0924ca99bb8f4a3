package queries

import (
	"context"
	"testing"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/nexmark"
)

// benchJob runs b.N events of the generator through add at parallelism 1
// (one source partition) into a discarding sink: events/s on one core.
func benchJob[T any](b *testing.B, add func(weir.Stream[nexmark.Event]) weir.Stream[T]) {
	cfg := nexmark.DefaultConfig()
	cfg.MaxEvents = int64(b.N)
	env := weir.NewEnvironment(weir.Parallelism(1))
	add(Events(env, NewSource(cfg, 1))).SinkTo(weir.DiscardSink[T]{})
	b.ResetTimer()
	if err := env.Execute(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkSource(b *testing.B) {
	benchJob(b, func(s weir.Stream[nexmark.Event]) weir.Stream[nexmark.Event] { return s })
}

func BenchmarkQ0(b *testing.B)  { benchJob(b, Q0) }
func BenchmarkQ1(b *testing.B)  { benchJob(b, Q1) }
func BenchmarkQ2(b *testing.B)  { benchJob(b, Q2) }
func BenchmarkQ3(b *testing.B)  { benchJob(b, Q3) }
func BenchmarkQ4(b *testing.B)  { benchJob(b, Q4) }
func BenchmarkQ9(b *testing.B)  { benchJob(b, Q9) }
func BenchmarkQ14(b *testing.B) { benchJob(b, Q14) }
func BenchmarkQ15(b *testing.B) { benchJob(b, Q15) }
func BenchmarkQ16(b *testing.B) { benchJob(b, Q16) }
func BenchmarkQ17(b *testing.B) { benchJob(b, Q17) }
func BenchmarkQ18(b *testing.B) { benchJob(b, Q18) }
func BenchmarkQ19(b *testing.B) { benchJob(b, Q19) }
func BenchmarkQ20(b *testing.B) { benchJob(b, Q20) }
func BenchmarkQ21(b *testing.B) { benchJob(b, Q21) }
func BenchmarkQ22(b *testing.B) { benchJob(b, Q22) }

func BenchmarkQ5(b *testing.B)  { benchJob(b, Q5) }
func BenchmarkQ7(b *testing.B)  { benchJob(b, Q7) }
func BenchmarkQ8(b *testing.B)  { benchJob(b, Q8) }
func BenchmarkQ11(b *testing.B) { benchJob(b, Q11) }
