package postgres

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/pgtest"
	"github.com/weirstream/weir/internal/sinktest"
)

// TestConformance runs the exactly-once sink conformance job into a private
// PostgreSQL with failures around PREPARE and COMMIT PREPARED; the table
// must hold every (key, seq) exactly once with cnt = seq, and no prepared
// transaction may be left.
func TestConformance(t *testing.T) {
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
			t.Run(table, func(t *testing.T) {
				if _, err := conn.Exec(ctx, "CREATE TABLE "+table+" (key BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
					t.Fatal(err)
				}
				c, err := NewCommitter(dsn, table, []string{"key", "seq", "cnt"},
					func(r sinktest.Row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				sinktest.Run(t, c, mode, seed)
				rows, _ := conn.Query(ctx, "SELECT key, seq, cnt FROM "+table)
				got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[sinktest.Row])
				if err != nil {
					t.Fatal(err)
				}
				sinktest.Check(t, mode, got)
				var prepared int
				conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&prepared)
				if prepared != 0 {
					t.Errorf("%d prepared transactions leaked", prepared)
				}
			})
		}
	}
}

// A savepoint that does not stop the job, then a task failure before the
// next checkpoint: every (key, seq) exactly once, no committed row ever
// changes or disappears, and no prepared transaction is left.
func TestSavepointThenFailure(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE sp (key BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
		t.Fatal(err)
	}
	c, err := NewCommitter(dsn, "sp", []string{"key", "seq", "cnt"},
		func(r sinktest.Row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() ([]sinktest.Row, error) {
		rows, err := conn.Query(ctx, "SELECT key, seq, cnt FROM sp")
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowToStructByPos[sinktest.Row])
	}
	var mu sync.Mutex // one pgx.Conn, used by the watcher and the check
	committed := func() ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		rows, err := read()
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprint(r))
		}
		return out, err
	}
	sinktest.SavepointThenFailure(t, c, committed, func() []sinktest.Row {
		mu.Lock()
		defer mu.Unlock()
		rows, err := read()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	})
	var prepared int
	conn.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&prepared)
	if prepared != 0 {
		t.Errorf("%d prepared transactions leaked", prepared)
	}
}

// A server that cannot prepare transactions, a missing table or column, an
// unreachable server and a bad DSN are clear errors up front.
func TestValidation(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	conn.Exec(ctx, "CREATE TABLE present (a BIGINT)")
	conn.Close(ctx)
	none := func(int64) []any { return nil }
	if _, err := NewCommitter(dsn, "absent", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "table absent") {
		t.Errorf("missing table: %v", err)
	}
	if _, err := NewCommitter(dsn, "present", []string{"nope"}, none); err == nil || !strings.Contains(err.Error(), "not usable") {
		t.Errorf("missing column: %v", err)
	}
	if _, err := NewCommitter("postgres://x@127.0.0.1:1/db?connect_timeout=2", "t", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable: %v", err)
	}
	if _, err := NewCommitter("::not a dsn::", "t", []string{"a"}, none); err == nil || !strings.Contains(err.Error(), "bad DSN") {
		t.Errorf("bad dsn: %v", err)
	}
	// The machine's shared server keeps the default max_prepared_transactions = 0.
	shared := "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"
	if c, err := pgx.Connect(ctx, shared); err == nil {
		var s string
		c.QueryRow(ctx, "SHOW max_prepared_transactions").Scan(&s)
		c.Close(ctx)
		if s == "0" {
			_, err := NewCommitter(shared, "t", []string{"a"}, none)
			if err == nil || !strings.Contains(err.Error(), "max_prepared_transactions = 0") {
				t.Errorf("max_prepared_transactions = 0: %v", err)
			}
		}
	}
}

// Upsert mode keeps the last row per key: after the conformance run with
// failures, each key's row has seq = cnt = the last sequence number.
func TestUpsert(t *testing.T) {
	dsn := pgtest.Start(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	conn.Exec(ctx, "CREATE TABLE latest (key BIGINT PRIMARY KEY, seq BIGINT, cnt BIGINT)")
	conn.Exec(ctx, "CREATE TABLE nokey (key BIGINT, seq BIGINT, cnt BIGINT)")
	row := func(r sinktest.Row) []any { return []any{r.Key, r.Seq, r.Cnt} }
	if _, err := NewCommitter(dsn, "nokey", []string{"key", "seq", "cnt"}, row, Options{UpsertKeys: []string{"key"}}); err == nil || !strings.Contains(err.Error(), "unique index") {
		t.Fatalf("upsert without a unique index: %v", err)
	}
	if _, err := NewCommitter(dsn, "latest", []string{"key", "seq", "cnt"}, row, Options{UpsertKeys: []string{"id"}}); err == nil || !strings.Contains(err.Error(), `upsert key "id"`) {
		t.Fatalf("unknown upsert key: %v", err)
	}
	c, err := NewCommitter(dsn, "latest", []string{"key", "seq", "cnt"}, row, Options{UpsertKeys: []string{"key"}, BatchSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sinktest.Run(t, c, weir.ExactlyOnce, 9)
	rows, _ := conn.Query(ctx, "SELECT key, seq, cnt FROM latest ORDER BY key")
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[sinktest.Row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != sinktest.Keys {
		t.Fatalf("%d rows, want one per key: %v", len(got), got)
	}
	for _, r := range got {
		if r.Seq != sinktest.PerKey || r.Cnt != sinktest.PerKey {
			t.Fatalf("key %d: seq %d cnt %d, want %d and %d", r.Key, r.Seq, r.Cnt, sinktest.PerKey, sinktest.PerKey)
		}
	}
}
