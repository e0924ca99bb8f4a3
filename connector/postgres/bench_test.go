package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/pgtest"
)

type benchRow struct{ K, V int64 }

// BenchmarkSink writes b.N rows through the exactly-once and the
// at-least-once sink, checkpoints every second, and reports rows/s.
func BenchmarkSink(b *testing.B) {
	dsn := pgtest.Start(b)
	for _, mode := range []string{"exactly-once", "at-least-once"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				b.Fatal(err)
			}
			table := fmt.Sprintf("bench_%d", time.Now().UnixNano())
			conn.Exec(ctx, "CREATE UNLOGGED TABLE "+table+" (k BIGINT, v BIGINT)")
			conn.Close(ctx)
			row := func(r benchRow) []any { return []any{r.K, r.V} }
			var sink weir.Sink[benchRow]
			if mode == "exactly-once" {
				sink, err = ExactlyOnce(dsn, table, []string{"k", "v"}, row)
			} else {
				sink, err = AtLeastOnce(dsn, table, []string{"k", "v"}, row)
			}
			if err != nil {
				b.Fatal(err)
			}
			env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, weir.ExactlyOnce), weir.CheckpointStorage(b.TempDir()))
			weir.FromSource(env, weir.Generator(2, int64(b.N/2+1), func(p int, off int64) benchRow { return benchRow{int64(p), off} }), "gen").
				SinkTo(sink).UID("sink")
			b.ResetTimer()
			start := time.Now()
			if err := env.Execute(ctx, "bench"); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(2*(b.N/2+1))/time.Since(start).Seconds(), "rows/s")
		})
	}
}
