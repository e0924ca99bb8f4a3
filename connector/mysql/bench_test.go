package mysql

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/weirstream/weir"
)

// BenchmarkSink writes b.N rows through the XA sink with checkpoints every
// second, in exactly-once and at-least-once job mode; reports rows/s.
func BenchmarkSink(b *testing.B) {
	db := server(b)
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		b.Run(mode.String(), func(b *testing.B) {
			table := fmt.Sprintf("weir_bench_%d", time.Now().UnixNano())
			if _, err := db.Exec("CREATE TABLE " + table + " (k BIGINT, v BIGINT)"); err != nil {
				b.Fatal(err)
			}
			defer db.Exec("DROP TABLE " + table)
			sink, err := ExactlyOnce(serverDSN, table, []string{"k", "v"}, func(v [2]int64) []any { return []any{v[0], v[1]} })
			if err != nil {
				b.Fatal(err)
			}
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, mode), weir.CheckpointStorage(b.TempDir()))
			weir.FromSource(env, weir.Generator(2, int64(b.N/2+1), func(p int, off int64) [2]int64 { return [2]int64{int64(p), off} }), "gen").
				SinkTo(sink).UID("sink")
			b.ResetTimer()
			start := time.Now()
			if err := env.Execute(context.Background(), "bench"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(2*(b.N/2+1))/time.Since(start).Seconds(), "rows/s")
		})
	}
}
