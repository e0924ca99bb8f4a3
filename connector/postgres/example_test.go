package postgres_test

import (
	"context"
	"log"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/postgres"
)

// Per-key running sums into PostgreSQL, exactly once. The table must exist
// and the server must allow prepared transactions.
func ExampleExactlyOnce() {
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(time.Second, weir.ExactlyOnce),
		weir.CheckpointStorage("/var/lib/weir/sums"))
	nums := weir.FromSource(env, weir.Generator(2, 1000, func(_ int, off int64) int64 { return off }), "numbers").UID("numbers")
	sums := weir.Sum(weir.KeyBy(nums, func(n int64) int64 { return n % 10 }), func(n int64) int64 { return n }).UID("sum")
	sink, err := postgres.ExactlyOnce("postgres://weir@localhost/app", "sums", []string{"key", "total"},
		func(kv weir.KV[int64, int64]) []any { return []any{kv.Key, kv.Value} },
		postgres.Options{UpsertKeys: []string{"key"}})
	if err != nil {
		log.Fatal(err) // names what to fix: DSN, server, table, max_prepared_transactions
	}
	sums.SinkTo(sink).UID("sums-sink")
	if err := env.Execute(context.Background(), "sums"); err != nil {
		log.Fatal(err)
	}
}
