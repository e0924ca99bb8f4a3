package kafka

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirstream/weir"
)

// BenchmarkSink writes b.N records into kfake through the exactly-once and
// the at-least-once sink with checkpoints every second; reports records/s.
func BenchmarkSink(b *testing.B) {
	for _, mode := range []string{"exactly-once", "at-least-once"} {
		b.Run(mode, func(b *testing.B) {
			brokers := cluster(b, 2, "out")
			enc := func(v int64) *kgo.Record { return &kgo.Record{Value: strconv.AppendInt(nil, v, 10)} }
			var sink weir.Sink[int64]
			var err error
			if mode == "exactly-once" {
				sink, err = ExactlyOnce(SinkOptions{Brokers: brokers, Topic: "out"}, enc)
			} else {
				sink, err = AtLeastOnce(SinkOptions{Brokers: brokers, Topic: "out"}, enc)
			}
			if err != nil {
				b.Fatal(err)
			}
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, weir.ExactlyOnce), weir.CheckpointStorage(b.TempDir()))
			weir.FromSource(env, weir.Generator(2, int64(b.N/2+1), func(_ int, off int64) int64 { return off }), "gen").SinkTo(sink).UID("sink")
			b.ResetTimer()
			start := time.Now()
			if err := env.Execute(context.Background(), "bench"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(2*(b.N/2+1))/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkSource reads b.N records from kfake with parallelism 2.
func BenchmarkSource(b *testing.B) {
	brokers := cluster(b, 4, "in")
	prod, _ := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("in"))
	for i := range b.N {
		prod.Produce(context.Background(), &kgo.Record{Partition: int32(i % 4), Value: fmt.Appendf(nil, "%d", i)}, nil)
	}
	if err := prod.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
	prod.Close()
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, weir.ExactlyOnce), weir.CheckpointStorage(b.TempDir()))
	src := Source(SourceOptions{Brokers: brokers, Topic: "in", Bounded: true}, func(r *kgo.Record) (int, error) { return len(r.Value), nil })
	weir.FromSource(env, src, "in").SinkTo(weir.DiscardSink[int]{})
	b.ResetTimer()
	start := time.Now()
	if err := env.Execute(context.Background(), "bench"); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
