package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/internal/sinktest"
)

const serverDSN = "root@tcp(127.0.0.1:3306)/test"

// server returns the machine's MariaDB, skipping (failing in CI) when it is
// not there.
func server(t testing.TB) *sql.DB {
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

// TestConformance runs the exactly-once sink conformance job into MariaDB
// with failures around XA PREPARE and XA COMMIT; the table must hold every
// (key, seq) exactly once with cnt = seq, and XA RECOVER must list nothing
// of ours.
func TestConformance(t *testing.T) {
	db := server(t)
	ctx := context.Background()
	for _, mode := range []weir.Mode{weir.ExactlyOnce, weir.AtLeastOnce} {
		for seed := uint64(1); seed <= 2; seed++ {
			table := fmt.Sprintf("weir_seq_%s_%d_%d", strings.ReplaceAll(mode.String(), "-", "_"), seed, time.Now().UnixNano())
			t.Run(table, func(t *testing.T) {
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (`key` BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { db.ExecContext(ctx, "DROP TABLE "+table) })
				c, err := NewCommitter(serverDSN, table, []string{"key", "seq", "cnt"},
					func(r sinktest.Row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				sinktest.Run(t, c, mode, seed)
				rows, err := db.QueryContext(ctx, "SELECT `key`, seq, cnt FROM "+table)
				if err != nil {
					t.Fatal(err)
				}
				var got []sinktest.Row
				for rows.Next() {
					var r sinktest.Row
					rows.Scan(&r.Key, &r.Seq, &r.Cnt)
					got = append(got, r)
				}
				rows.Close()
				sinktest.Check(t, mode, got)
				left, err := c.Recover("weir")
				if err != nil {
					t.Fatal(err)
				}
				if len(left) != 0 {
					t.Errorf("prepared XA transactions leaked: %v", left)
				}
			})
		}
	}
}

// A savepoint that does not stop the job, then a task failure before the
// next checkpoint: every (key, seq) exactly once, no committed row ever
// changes or disappears, and no prepared XA transaction of ours is left.
func TestSavepointThenFailure(t *testing.T) {
	db := server(t)
	ctx := context.Background()
	table := fmt.Sprintf("weir_sp_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (`key` BIGINT, seq BIGINT, cnt BIGINT)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(ctx, "DROP TABLE "+table) })
	c, err := NewCommitter(serverDSN, table, []string{"key", "seq", "cnt"},
		func(r sinktest.Row) []any { return []any{r.Key, r.Seq, r.Cnt} }, Options{BatchSize: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() ([]sinktest.Row, error) {
		rows, err := db.QueryContext(ctx, "SELECT `key`, seq, cnt FROM "+table)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var got []sinktest.Row
		for rows.Next() {
			var r sinktest.Row
			if err := rows.Scan(&r.Key, &r.Seq, &r.Cnt); err != nil {
				return nil, err
			}
			got = append(got, r)
		}
		return got, rows.Err()
	}
	committed := func() ([]string, error) {
		rows, err := read()
		var out []string
		for _, r := range rows {
			out = append(out, fmt.Sprint(r))
		}
		return out, err
	}
	sinktest.SavepointThenFailure(t, c, committed, func() []sinktest.Row {
		rows, err := read()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	})
	left, err := c.Recover("weir")
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("prepared XA transactions leaked: %v", left)
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
