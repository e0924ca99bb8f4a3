package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/pgtest"
	"github.com/weirstream/weir/restart"
)

type rec struct{ Key, Seq int64 }
type row struct{ Key, Seq, Cnt int64 }

type counter struct{ cnt weir.ValueState[int64] }

func (c *counter) Open(ctx *weir.KeyedContext[int64]) (err error) {
	c.cnt, err = weir.GetValueState[int64](ctx, "cnt")
	return err
}

func (c *counter) ProcessElement(_ *weir.KeyedContext[int64], in rec, out weir.Collector[row]) error {
	n, _ := c.cnt.Value()
	n++
	c.cnt.Update(n)
	out.Collect(row{in.Key, in.Seq, n})
	return nil
}

type injector struct {
	mu   sync.Mutex
	rng  *rand.Rand
	left int
	hits map[string]int
}

func (in *injector) maybe(where string, p float64) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.left == 0 || in.rng.Float64() >= p {
		return nil
	}
	in.left--
	in.hits[where]++
	return fmt.Errorf("injected failure in %s", where)
}

type flaky struct {
	*Committer[row]
	inj *injector
}

func (f flaky) PreCommit(txn *Txn) error {
	if err := f.inj.maybe("pre-commit", 0.03); err != nil {
		return err
	}
	return f.Committer.PreCommit(txn)
}

func (f flaky) Commit(txn *Txn) error {
	if err := f.inj.maybe("before-commit", 0.05); err != nil {
		return err
	}
	if err := f.Committer.Commit(txn); err != nil {
		return err
	}
	return f.inj.maybe("after-commit", 0.05)
}

// TestExactlyOnceWithFailures runs sequence-numbered records through a
// keyed counter into PostgreSQL while failures hit the map, the prepare,
// and both sides of COMMIT PREPARED; the table ends with every (key, seq)
// exactly once and cnt = seq, and no prepared transaction is left.
func TestExactlyOnceWithFailures(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 2; seed++ {
			table := fmt.Sprintf("seq_%s_%d", strings.ReplaceAll(mode.String(), "-", "_"), seed)
			if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (key BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
				t.Fatal(err)
			}
			t.Run(table, func(t *testing.T) { runSeq(t, dsn, table, mode, seed, conn) })
		}
	}
}

func runSeq(t *testing.T, dsn, table string, mode weir.Mode, seed uint64, conn *pgx.Conn) {
	const keys, perKey = 4, 1500
	ctx := context.Background()
	c, err := NewCommitter(dsn, table, []string{"key", "seq", "cnt"}, func(r row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	inj := &injector{rng: rand.New(rand.NewPCG(seed, 3)), left: 8, hits: map[string]int{}}
	env := weir.NewEnvironment(weir.Parallelism(2), weir.Checkpointing(20*time.Millisecond, mode), weir.CheckpointStorage(t.TempDir()),
		weir.RestartStrategy(restart.FixedDelay(100, 10*time.Millisecond)), weir.BufferSize(64))
	gen := weir.Generator(keys, perKey, func(p int, off int64) rec { return rec{int64(p), off + 1} }).WithRate(6000)
	src := weir.FromSource[rec](env, gen, "seq").UID("src")
	mapped := weir.MapErr(src, func(r rec) (rec, error) { return r, inj.maybe("map", 0.0005) }).UID("map")
	rows := weir.Process(weir.KeyBy(mapped, func(r rec) int64 { return r.Key }), &counter{}).UID("count")
	rows.SinkTo(weir.TwoPhaseCommitSink[row, *Txn](flaky{c, inj})).UID("pg")
	jctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := env.Execute(jctx, table); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.hits)
	}
	t.Logf("injected %v", inj.hits)
	var lost, dups, bad, prepared int
	q := fmt.Sprintf(`SELECT
		(SELECT count(*) FROM generate_series(0, %d) k, generate_series(1, %d) s WHERE NOT EXISTS (SELECT 1 FROM %s t WHERE t.key = k AND t.seq = s)),
		(SELECT count(*) FROM (SELECT key, seq FROM %s GROUP BY key, seq HAVING count(*) > 1) d),
		(SELECT count(*) FROM %s WHERE cnt <> seq),
		(SELECT count(*) FROM pg_prepared_xacts)`, keys-1, perKey, table, table, table)
	if err := conn.QueryRow(ctx, q).Scan(&lost, &dups, &bad, &prepared); err != nil {
		t.Fatal(err)
	}
	if lost > 0 {
		t.Errorf("%d rows lost", lost)
	}
	if mode == weir.ExactlyOnce && (dups > 0 || bad > 0) {
		t.Errorf("exactly once: %d duplicated, %d with cnt <> seq", dups, bad)
	}
	if prepared != 0 {
		t.Errorf("%d prepared transactions leaked", prepared)
	}
	if len(inj.hits) == 0 {
		t.Error("no failure injected")
	}
}

// A server that cannot prepare transactions, a missing table and a bad DSN
// are clear errors up front.
func TestValidation(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn.Exec(ctx, "CREATE TABLE present (a BIGINT)")
	conn.Close(ctx)
	if _, err := NewCommitter(dsn, "absent", []string{"a"}, func(int64) []any { return nil }); err == nil || !strings.Contains(err.Error(), "table absent") {
		t.Errorf("missing table: %v", err)
	}
	if _, err := NewCommitter(dsn, "present", []string{"nope"}, func(int64) []any { return nil }); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Errorf("missing column: %v", err)
	}
	if _, err := NewCommitter("postgres://x@127.0.0.1:1/db?connect_timeout=2", "t", []string{"a"}, func(int64) []any { return nil }); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
	if _, err := NewCommitter("::not a dsn::", "t", []string{"a"}, func(int64) []any { return nil }); err == nil || !strings.Contains(err.Error(), "bad DSN") {
		t.Errorf("bad dsn: %v", err)
	}
	// The machine's shared server keeps the default max_prepared_transactions = 0.
	shared := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"
	if c, err := pgx.Connect(ctx, shared); err == nil {
		var s string
		c.QueryRow(ctx, "SHOW max_prepared_transactions").Scan(&s)
		c.Close(ctx)
		if s == "0" {
			_, err := NewCommitter(shared, "t", []string{"a"}, func(int64) []any { return nil })
			if err == nil || !strings.Contains(err.Error(), "max_prepared_transactions = 0") {
				t.Errorf("max_prepared_transactions = 0: %v", err)
			}
		}
	}
}
