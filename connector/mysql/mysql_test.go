package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirstream/weir"
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

const serverDSN = "root@tcp(127.0.0.1:3306)/test"

// server returns the machine's MariaDB, skipping (failing in CI) when it is
// not there.
func server(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", serverDSN)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("MariaDB/MySQL at 127.0.0.1:3306 (root, no password, database test) is not reachable: %v", err)
		}
		t.Skipf("MariaDB/MySQL at 127.0.0.1:3306 is not reachable (%v): start it to run this test", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestExactlyOnceWithFailures runs sequence-numbered records through a
// keyed counter into MariaDB while failures hit the map, XA PREPARE, and
// both sides of XA COMMIT; the table ends with every (key, seq) exactly
// once and cnt = seq, and XA RECOVER lists nothing of ours.
func TestExactlyOnceWithFailures(t *testing.T) {
	db := server(t)
	ctx := context.Background()
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 2; seed++ {
			table := fmt.Sprintf("weir_seq_%s_%d_%d", strings.ReplaceAll(mode.String(), "-", "_"), seed, time.Now().UnixNano())
			if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (`key` BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.ExecContext(ctx, "DROP TABLE "+table) })
			t.Run(table, func(t *testing.T) { runSeq(t, table, mode, seed, db) })
		}
	}
}

func runSeq(t *testing.T, table string, mode weir.Mode, seed uint64, db *sql.DB) {
	const keys, perKey = 4, 1500
	ctx := context.Background()
	c, err := NewCommitter(serverDSN, table, []string{"key", "seq", "cnt"}, func(r row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
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
	rows.SinkTo(weir.TwoPhaseCommitSink[row, *Txn](flaky{c, inj})).UID("mysql")
	jctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := env.Execute(jctx, table); err != nil {
		t.Fatalf("job: %v (injected %v)", err, inj.hits)
	}
	t.Logf("injected %v", inj.hits)
	var total, distinct, bad int
	q := "SELECT count(*), count(DISTINCT `key`, seq), coalesce(sum(cnt <> seq), 0) FROM " + table
	if err := db.QueryRowContext(ctx, q).Scan(&total, &distinct, &bad); err != nil {
		t.Fatal(err)
	}
	if distinct != keys*perKey {
		t.Errorf("%d distinct (key, seq), want %d: rows lost", distinct, keys*perKey)
	}
	if mode == weir.ExactlyOnce && (total != distinct || bad > 0) {
		t.Errorf("exactly once: %d rows for %d distinct (key, seq); %d with cnt <> seq", total, distinct, bad)
	}
	left, err := c.Recover("weir")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("prepared XA transactions leaked: %v", left)
	}
	if len(inj.hits) == 0 {
		t.Error("no failure injected")
	}
}

// A missing table, a missing column, a bad DSN and an unreachable server
// are clear errors up front.
func TestValidation(t *testing.T) {
	db := server(t)
	table := fmt.Sprintf("weir_present_%d", time.Now().UnixNano())
	db.Exec("CREATE TABLE " + table + " (a BIGINT)")
	t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
	none := func(int64) []any { return nil }
	if _, err := NewCommitter(serverDSN, "weir_absent", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "table weir_absent") {
		t.Errorf("missing table: %v", err)
	}
	if _, err := NewCommitter(serverDSN, table, []string{"nope"}, none); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Errorf("missing column: %v", err)
	}
	if _, err := NewCommitter("root@tcp(127.0.0.1:1)/test?timeout=2s", "t", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
	if _, err := NewCommitter("no-slash-here", "t", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "bad DSN") {
		t.Errorf("bad dsn: %v", err)
	}
}
