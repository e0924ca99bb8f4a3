package runtime

import (
	"context"
	"testing"

	"github.com/weirstream/weir/metrics"
)

// discardChannel takes every buffer at once and hands the same slice back.
type discardChannel struct{ buf []int64 }

func (d *discardChannel) Send(_ context.Context, b Buffer[int64]) error {
	d.buf = b.Records[:0]
	return nil
}
func (d *discardChannel) NewBuffer() []int64 { return d.buf }

// BenchmarkRecordWriterMetrics is the cost of the subtask metrics on the
// output path: records through a writer into a channel that takes every
// buffer at once, with and without counters (one atomic add and two clock
// reads per buffer of 1024).
//
//	go test -run X -bench RecordWriterMetrics -count 5 ./runtime
func BenchmarkRecordWriterMetrics(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "metrics=off"
		if withMetrics {
			name = "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			ch := &discardChannel{buf: make([]int64, 0, DefaultBufferSize)}
			w := NewRecordWriter[int64](context.Background(), Forward, []OutputChannel[int64]{ch}, DefaultBufferSize, nil, nil, nil)
			if withMetrics {
				w.SetMetrics(metrics.NewTask())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				w.Collect(int64(i))
			}
			w.Flush()
		})
	}
}
