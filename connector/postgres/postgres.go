// Package postgres is weir's exactly-once PostgreSQL sink: one transaction
// per subtask and checkpoint epoch, made durable with PREPARE TRANSACTION
// when the checkpoint barrier passes and committed with COMMIT PREPARED when
// the checkpoint completes. After a failure the sink commits the prepared
// transactions of the restored checkpoint and rolls back every other one it
// prepared, found in pg_prepared_xacts by their name prefix.
//
// The server must allow prepared transactions (max_prepared_transactions >
// 0, which needs a restart to change), and the table must exist:
//
//	sink, err := postgres.ExactlyOnce[Row](dsn, "sums", []string{"key", "sum"},
//		func(r Row) []any { return []any{r.Key, r.Sum} })
//	if err != nil { ... }
//	sums.SinkTo(sink).UID("sums-sink")
//
// Rows are written with COPY in batches as they arrive (or, in upsert mode,
// with INSERT ... ON CONFLICT DO UPDATE), inside the epoch's transaction;
// nothing is visible to readers before the commit.
//
// Admin lists, commits and rolls back the sink's prepared transactions from
// outside a job, by the transaction name prefixes a checkpoint records
// (the weir txn command).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/checkpoint"
	"github.com/weirstream/weir/connector/internal/prepared"
)

// Options tune the sink.
type Options struct {
	// BatchSize is the number of rows sent with one COPY (default 1000).
	BatchSize int
	// Timeout bounds each statement (default 1 minute).
	Timeout time.Duration
	// UpsertKeys switches from append to upsert: rows are written with
	// INSERT ... ON CONFLICT (UpsertKeys) DO UPDATE, so the table keeps the
	// last row per key (it needs a unique index on those columns). Empty:
	// append with COPY. An epoch's upserts are sent at its pre-commit, after
	// the previous epoch committed; keep max concurrent checkpoints at 1.
	// If an aborted checkpoint leaves an earlier epoch prepared, its row
	// locks make the next upsert time out (lock_timeout 10 s) and the job
	// fails over, which settles it.
	UpsertKeys []string
}

// ExactlyOnce returns an exactly-once sink into table. row maps a record to
// the values of columns. It connects once to check that the server allows
// prepared transactions and that the table has the columns, and returns a
// clear error otherwise.
func ExactlyOnce[T any](dsn, table string, columns []string, row func(T) []any, opts ...Options) (weir.Sink[T], error) {
	c, err := NewCommitter(dsn, table, columns, row, opts...)
	if err != nil {
		return nil, err
	}
	return weir.TwoPhaseCommitSink(c), nil
}

// Committer is the sink's weir.TwoPhaseCommitter.
type Committer[T any] struct {
	pool       *pgxpool.Pool
	table      pgx.Identifier
	columns    []string
	row        func(T) []any
	opts       Options
	keyIdx     []int  // upsert key columns
	upsertTail string // ON CONFLICT ...
}

// Txn is the transaction handle: its global id (gid). While the epoch is
// open it also holds the connection and the rows not yet sent.
type Txn struct {
	GID  string
	conn *pgxpool.Conn
	rows [][]any
}

var gidUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// NewCommitter connects and validates; see ExactlyOnce.
func NewCommitter[T any](dsn, table string, columns []string, row func(T) []any, opts ...Options) (*Committer[T], error) {
	o := Options{BatchSize: 1000, Timeout: time.Minute}
	if len(opts) > 0 {
		if opts[0].BatchSize > 0 {
			o.BatchSize = opts[0].BatchSize
		}
		if opts[0].Timeout > 0 {
			o.Timeout = opts[0].Timeout
		}
		o.UpsertKeys = opts[0].UpsertKeys
	}
	if table == "" || len(columns) == 0 || row == nil {
		return nil, errors.New("postgres sink needs a table, columns and a row function")
	}
	var keyIdx []int
	for _, k := range o.UpsertKeys {
		i := slices.Index(columns, k)
		if i < 0 {
			return nil, fmt.Errorf("postgres sink: upsert key %q is not one of the columns %v", k, columns)
		}
		keyIdx = append(keyIdx, i)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: bad DSN: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: cannot connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	var maxPrepared int
	var s string
	if err := pool.QueryRow(ctx, "SHOW max_prepared_transactions").Scan(&s); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: cannot reach %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	fmt.Sscan(s, &maxPrepared)
	if maxPrepared == 0 {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: the server at %s:%d has max_prepared_transactions = 0, so it cannot prepare transactions; "+
			"set max_prepared_transactions to at least the sink's parallelism times the checkpoints in flight plus one (in postgresql.conf) and restart the server",
			cfg.ConnConfig.Host, cfg.ConnConfig.Port)
	}
	ident := pgx.Identifier(strings.Split(table, "."))
	var probe string
	for i, c := range columns {
		if i == 0 {
			probe = "SELECT " + pgx.Identifier{c}.Sanitize()
		} else {
			probe += ", " + pgx.Identifier{c}.Sanitize()
		}
	}
	probe += " FROM " + ident.Sanitize() + " LIMIT 0"
	if _, err := pool.Exec(ctx, probe); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres sink: table %s with columns %v is not usable: %w", table, columns, err)
	}
	c := &Committer[T]{pool: pool, table: ident, columns: columns, row: row, opts: o, keyIdx: keyIdx}
	if len(keyIdx) > 0 {
		c.upsertTail = upsertTail(columns, o.UpsertKeys)
		// The conflict target must match a unique index; PostgreSQL checks
		// it when planning, even for no rows.
		q := c.insertHead() + " SELECT " + strings.TrimSuffix(strings.Repeat("NULL,", len(columns)), ",") + " WHERE false " + c.upsertTail
		if _, err := pool.Exec(ctx, q); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres sink: cannot upsert into %s by %v (is there a unique index on them?): %w", table, o.UpsertKeys, err)
		}
	}
	return c, nil
}

func (c *Committer[T]) insertHead() string {
	cols := make([]string, len(c.columns))
	for i, col := range c.columns {
		cols[i] = pgx.Identifier{col}.Sanitize()
	}
	return "INSERT INTO " + c.table.Sanitize() + " (" + strings.Join(cols, ", ") + ")"
}

func upsertTail(columns, keys []string) string {
	var ks, sets []string
	for _, k := range keys {
		ks = append(ks, pgx.Identifier{k}.Sanitize())
	}
	for _, col := range columns {
		if !slices.Contains(keys, col) {
			q := pgx.Identifier{col}.Sanitize()
			sets = append(sets, q+" = EXCLUDED."+q)
		}
	}
	if len(sets) == 0 {
		return "ON CONFLICT (" + strings.Join(ks, ", ") + ") DO NOTHING"
	}
	return "ON CONFLICT (" + strings.Join(ks, ", ") + ") DO UPDATE SET " + strings.Join(sets, ", ")
}

// upsertRows writes rows with INSERT ... ON CONFLICT, keeping only the last
// row of each key (one statement may not update a row twice).
func (c *Committer[T]) upsertRows(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, rows [][]any) error {
	for len(rows) > 0 {
		// Chunks of BatchSize rows keep statements bounded; a key in two
		// chunks is updated twice, in order, which keeps the last row.
		n := min(len(rows), c.opts.BatchSize)
		if err := c.upsertChunk(ctx, conn, rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

func (c *Committer[T]) upsertChunk(ctx context.Context, conn interface {
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
}, rows [][]any) error {
	last := map[string]int{}
	var order []string
	for i, r := range rows {
		var kb strings.Builder
		for _, k := range c.keyIdx {
			fmt.Fprintf(&kb, "%v\x00", r[k])
		}
		key := kb.String()
		if _, seen := last[key]; !seen {
			order = append(order, key)
		}
		last[key] = i
	}
	var q strings.Builder
	q.WriteString(c.insertHead())
	q.WriteString(" VALUES ")
	args := make([]any, 0, len(order)*len(c.columns))
	for n, key := range order {
		if n > 0 {
			q.WriteString(", ")
		}
		q.WriteByte('(')
		for j := range c.columns {
			if j > 0 {
				q.WriteString(", ")
			}
			args = append(args, rows[last[key]][j])
			fmt.Fprintf(&q, "$%d", len(args))
		}
		q.WriteByte(')')
	}
	q.WriteByte(' ')
	q.WriteString(c.upsertTail)
	_, err := conn.Exec(ctx, q.String(), args...)
	return err
}

// Close releases the connection pool.
func (c *Committer[T]) Close() { c.pool.Close() }

func (c *Committer[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.opts.Timeout)
}

func gidOf(name string) string {
	g := gidUnsafe.ReplaceAllString(name, "_")
	if len(g) > 190 {
		g = g[len(g)-190:]
	}
	return g
}

// Begin opens the epoch's transaction on a connection of its own.
func (c *Committer[T]) Begin(tc weir.TxnContext) (*Txn, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	conn, err := c.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot get a connection: %w", err)
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		conn.Release()
		return nil, fmt.Errorf("cannot begin: %w", err)
	}
	if len(c.keyIdx) > 0 {
		// A prepared transaction of an earlier epoch that is still waiting
		// for its checkpoint (one was aborted) holds locks on the same keys;
		// waiting for it would block the task that must commit it. Fail
		// fast instead: the job fails over and the restore settles it.
		if _, err := conn.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			conn.Exec(ctx, "ROLLBACK")
			conn.Release()
			return nil, fmt.Errorf("cannot set lock_timeout: %w", err)
		}
	}
	return &Txn{GID: gidOf(tc.Name()), conn: conn}, nil
}

func (c *Committer[T]) Write(txn *Txn, r T) error {
	txn.rows = append(txn.rows, c.row(r))
	// Upserts wait for the pre-commit: the epoch's rows then update each
	// key once, and only after the previous epoch committed (the previous
	// prepared transaction holds the row locks of its keys).
	if len(txn.rows) >= c.opts.BatchSize && len(c.keyIdx) == 0 {
		return c.flush(txn)
	}
	return nil
}

func (c *Committer[T]) flush(txn *Txn) error {
	if len(txn.rows) == 0 {
		return nil
	}
	ctx, cancel := c.ctx()
	defer cancel()
	if len(c.keyIdx) > 0 {
		if err := c.upsertRows(ctx, txn.conn, txn.rows); err != nil {
			return fmt.Errorf("cannot upsert %d rows into %s: %w", len(txn.rows), c.table.Sanitize(), err)
		}
	} else if _, err := txn.conn.Conn().CopyFrom(ctx, c.table, c.columns, pgx.CopyFromRows(txn.rows)); err != nil {
		return fmt.Errorf("cannot copy %d rows into %s: %w", len(txn.rows), c.table.Sanitize(), err)
	}
	clear(txn.rows)
	txn.rows = txn.rows[:0]
	return nil
}

// PreCommit sends the remaining rows and prepares the transaction.
func (c *Committer[T]) PreCommit(txn *Txn) error {
	if txn.conn == nil {
		return fmt.Errorf("transaction %s is not open", txn.GID)
	}
	if err := c.flush(txn); err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	_, err := txn.conn.Exec(ctx, "PREPARE TRANSACTION '"+txn.GID+"'")
	conn := txn.conn
	txn.conn = nil
	if err != nil {
		conn.Exec(ctx, "ROLLBACK")
		conn.Release()
		return fmt.Errorf("cannot prepare transaction %s: %w", txn.GID, err)
	}
	conn.Release()
	return nil
}

func undefinedObject(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42704"
}

// Commit commits a prepared transaction; one that no longer exists was
// committed before (only this sink prepares and settles its gids).
func (c *Committer[T]) Commit(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	return prepared.Commit(ctx, dialect{c.pool}, txn.GID)
}

// dialect is PostgreSQL's side of package prepared.
type dialect struct{ pool *pgxpool.Pool }

func (d dialect) Settle(ctx context.Context, gid string, commit bool) (bool, error) {
	stmt := "ROLLBACK PREPARED '"
	if commit {
		stmt = "COMMIT PREPARED '"
	}
	_, err := d.pool.Exec(ctx, stmt+gid+"'")
	if undefinedObject(err) {
		return false, nil
	}
	return err == nil, err
}

func (d dialect) Prepared(ctx context.Context, prefix string) ([]string, error) {
	rows, err := d.pool.Query(ctx, "SELECT gid FROM pg_prepared_xacts WHERE starts_with(gid, $1)", prefix)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// Abort rolls back an open or prepared transaction.
func (c *Committer[T]) Abort(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if txn.conn != nil {
		_, err := txn.conn.Exec(ctx, "ROLLBACK")
		txn.conn.Release()
		txn.conn = nil
		if err != nil {
			return fmt.Errorf("cannot roll back %s: %w", txn.GID, err)
		}
		return nil
	}
	return prepared.Rollback(ctx, dialect{c.pool}, txn.GID)
}

// AbortLingering rolls back every prepared transaction of the prefix that
// is not kept.
func (c *Committer[T]) AbortLingering(tc weir.TxnContext, keep []*Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	var kept []string
	for _, k := range keep {
		kept = append(kept, k.GID)
	}
	return prepared.AbortLingering(ctx, dialect{c.pool}, gidOf(tc.Prefix)+"-", kept)
}

func (c *Committer[T]) EncodeHandle(txn *Txn) ([]byte, error) { return []byte(txn.GID), nil }

func (c *Committer[T]) DecodeHandle(b []byte) (*Txn, error) {
	g := string(b)
	if g == "" || gidUnsafe.MatchString(g) {
		return nil, fmt.Errorf("invalid transaction id %q", g)
	}
	return &Txn{GID: g}, nil
}

// AtLeastOnce returns a sink that copies rows in autocommitted batches and
// flushes at every checkpoint barrier: nothing is lost, and after a restore
// the rows since the last checkpoint are written again.
func AtLeastOnce[T any](dsn, table string, columns []string, row func(T) []any, opts ...Options) (weir.Sink[T], error) {
	c, err := NewCommitter(dsn, table, columns, row, opts...)
	if err != nil {
		return nil, err
	}
	return &aloSink[T]{c: c}, nil
}

type aloSink[T any] struct{ c *Committer[T] }

type aloWriter[T any] struct {
	c    *Committer[T]
	rows [][]any
}

func (s *aloSink[T]) CreateWriter(weir.SinkContext) (weir.SinkWriter[T], error) {
	return &aloWriter[T]{c: s.c}, nil
}

func (w *aloWriter[T]) Write(r T) error {
	w.rows = append(w.rows, w.c.row(r))
	if len(w.rows) >= w.c.opts.BatchSize {
		return w.flush()
	}
	return nil
}

func (w *aloWriter[T]) flush() error {
	if len(w.rows) == 0 {
		return nil
	}
	ctx, cancel := w.c.ctx()
	defer cancel()
	if len(w.c.keyIdx) > 0 {
		if err := w.c.upsertRows(ctx, w.c.pool, w.rows); err != nil {
			return fmt.Errorf("cannot upsert %d rows into %s: %w", len(w.rows), w.c.table.Sanitize(), err)
		}
	} else if _, err := w.c.pool.CopyFrom(ctx, w.c.table, w.c.columns, pgx.CopyFromRows(w.rows)); err != nil {
		return fmt.Errorf("cannot copy %d rows into %s: %w", len(w.rows), w.c.table.Sanitize(), err)
	}
	clear(w.rows)
	w.rows = w.rows[:0]
	return nil
}

// SnapshotState writes every row before the barrier.
func (w *aloWriter[T]) SnapshotState(checkpoint.ID) ([][]byte, error) { return nil, w.flush() }

// Finish writes the last rows.
func (w *aloWriter[T]) Finish() error { return w.flush() }

func (w *aloWriter[T]) Close() error { return nil }
