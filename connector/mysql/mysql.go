// Package mysql is weir's exactly-once MySQL / MariaDB sink, built on XA
// transactions: one per subtask and checkpoint epoch, on one pinned
// connection (XA START, the inserts, XA END, XA PREPARE when the checkpoint
// barrier passes), committed with XA COMMIT when the checkpoint completes.
// After a failure the sink commits the prepared transactions of the
// restored checkpoint and rolls back every other one it prepared, found
// with XA RECOVER.
//
//	sink, err := mysql.ExactlyOnce[Row]("root@tcp(127.0.0.1:3306)/test", "sums", []string{"k", "sum"},
//		func(r Row) []any { return []any{r.Key, r.Sum} })
//	if err != nil { ... }
//	sums.SinkTo(sink).UID("sums-sink")
//
// Admin lists, commits and rolls back the sink's prepared XA transactions
// from outside a job, by the transaction name prefixes a checkpoint records
// (the weir txn command).
package mysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	drv "github.com/go-sql-driver/mysql"

	"github.com/weirstream/weir"
	"github.com/weirstream/weir/connector/internal/prepared"
)

// Options tune the sink.
type Options struct {
	// BatchSize is the number of rows per multi-row INSERT (default 500).
	BatchSize int
	// Timeout bounds each statement (default 1 minute).
	Timeout time.Duration
}

// ExactlyOnce returns an exactly-once sink into table; row maps a record to
// the values of columns. It checks the DSN, the server and the table up
// front.
func ExactlyOnce[T any](dsn, table string, columns []string, row func(T) []any, opts ...Options) (weir.Sink[T], error) {
	c, err := NewCommitter(dsn, table, columns, row, opts...)
	if err != nil {
		return nil, err
	}
	return weir.TwoPhaseCommitSink(c), nil
}

// Committer is the sink's weir.TwoPhaseCommitter.
type Committer[T any] struct {
	db     *sql.DB
	insert string // INSERT INTO t (cols) VALUES
	tuple  string // (?,?,?)
	ncols  int
	row    func(T) []any
	opts   Options
}

// Txn is the handle of one XA transaction: its id. While the epoch is open
// it holds the pinned connection and the rows not yet sent.
type Txn struct {
	XID  string
	conn *sql.Conn
	rows []any
	n    int
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// NewCommitter connects and validates; see ExactlyOnce.
func NewCommitter[T any](dsn, table string, columns []string, row func(T) []any, opts ...Options) (*Committer[T], error) {
	o := Options{BatchSize: 500, Timeout: time.Minute}
	if len(opts) > 0 {
		if opts[0].BatchSize > 0 {
			o.BatchSize = opts[0].BatchSize
		}
		if opts[0].Timeout > 0 {
			o.Timeout = opts[0].Timeout
		}
	}
	if table == "" || len(columns) == 0 || row == nil {
		return nil, errors.New("mysql sink needs a table, columns and a row function")
	}
	cfg, err := drv.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql sink: bad DSN: %w", err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("mysql sink: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql sink: cannot reach %s: %w", cfg.Addr, err)
	}
	var quoted []string
	for _, c := range columns {
		quoted = append(quoted, quoteIdent(c))
	}
	var parts []string
	for _, p := range strings.Split(table, ".") {
		parts = append(parts, quoteIdent(p))
	}
	qt := strings.Join(parts, ".")
	if _, err := db.ExecContext(ctx, "SELECT "+strings.Join(quoted, ", ")+" FROM "+qt+" LIMIT 0"); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql sink: table %s with columns %v is not usable: %w", table, columns, err)
	}
	return &Committer[T]{db: db, insert: "INSERT INTO " + qt + " (" + strings.Join(quoted, ", ") + ") VALUES ",
		tuple: "(" + strings.TrimSuffix(strings.Repeat("?,", len(columns)), ",") + ")", ncols: len(columns), row: row, opts: o}, nil
}

// Close releases the connection pool.
func (c *Committer[T]) Close() error { return c.db.Close() }

func (c *Committer[T]) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.opts.Timeout)
}

// xidOf maps a transaction name to an XA id: XA ids hold at most 64 bytes,
// so the name's prefix is hashed.
func xidOf(name string) string {
	i := strings.LastIndexByte(name, '-')
	prefix, seq := name, ""
	if i >= 0 {
		prefix, seq = name[:i], name[i:]
	}
	return xidPrefix(prefix) + seq
}

func xidPrefix(prefix string) string {
	h := fnv.New64a()
	h.Write([]byte(prefix))
	return fmt.Sprintf("weir%016x", h.Sum64())
}

func (c *Committer[T]) Begin(tc weir.TxnContext) (*Txn, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	conn, err := c.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot get a connection: %w", err)
	}
	xid := xidOf(tc.Name())
	if _, err := conn.ExecContext(ctx, "XA START '"+xid+"'"); err != nil {
		discard(conn)
		return nil, fmt.Errorf("cannot start XA transaction %s: %w", xid, err)
	}
	return &Txn{XID: xid, conn: conn}, nil
}

// discard closes a connection instead of returning it to the pool.
func discard(conn *sql.Conn) {
	conn.Raw(func(any) error { return driver.ErrBadConn })
	conn.Close()
}

func (c *Committer[T]) Write(txn *Txn, r T) error {
	vals := c.row(r)
	if len(vals) != c.ncols {
		return fmt.Errorf("row function returned %d values for %d columns", len(vals), c.ncols)
	}
	txn.rows = append(txn.rows, vals...)
	txn.n++
	if txn.n >= c.opts.BatchSize {
		return c.flush(txn)
	}
	return nil
}

func (c *Committer[T]) flush(txn *Txn) error {
	if txn.n == 0 {
		return nil
	}
	ctx, cancel := c.ctx()
	defer cancel()
	q := c.insert + strings.TrimSuffix(strings.Repeat(c.tuple+",", txn.n), ",")
	if _, err := txn.conn.ExecContext(ctx, q, txn.rows...); err != nil {
		return fmt.Errorf("cannot insert %d rows: %w", txn.n, err)
	}
	clear(txn.rows)
	txn.rows, txn.n = txn.rows[:0], 0
	return nil
}

// PreCommit sends the remaining rows, ends and prepares the transaction.
func (c *Committer[T]) PreCommit(txn *Txn) error {
	if txn.conn == nil {
		return fmt.Errorf("XA transaction %s is not open", txn.XID)
	}
	if err := c.flush(txn); err != nil {
		return err
	}
	ctx, cancel := c.ctx()
	defer cancel()
	conn := txn.conn
	txn.conn = nil
	defer discard(conn) // a session that prepared an XA transaction is not reused
	if _, err := conn.ExecContext(ctx, "XA END '"+txn.XID+"'"); err != nil {
		return fmt.Errorf("cannot end XA transaction %s: %w", txn.XID, err)
	}
	if _, err := conn.ExecContext(ctx, "XA PREPARE '"+txn.XID+"'"); err != nil {
		return fmt.Errorf("cannot prepare XA transaction %s: %w", txn.XID, err)
	}
	return nil
}

func unknownXID(err error) bool {
	var me *drv.MySQLError
	return errors.As(err, &me) && me.Number == 1397 // XAER_NOTA
}

// Commit commits a prepared transaction; an unknown id was committed
// before (only this sink settles its ids).
func (c *Committer[T]) Commit(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	return prepared.Commit(ctx, dialect[T]{c}, txn.XID)
}

// dialect is MariaDB's and MySQL's side of package prepared.
type dialect[T any] struct{ c *Committer[T] }

func (d dialect[T]) Settle(ctx context.Context, xid string, commit bool) (bool, error) {
	stmt := "XA ROLLBACK"
	if commit {
		stmt = "XA COMMIT"
	}
	return d.c.settle(ctx, stmt, xid)
}

func (d dialect[T]) Prepared(_ context.Context, prefix string) ([]string, error) {
	return d.c.Recover(prefix)
}

// settleRetry is the pause between tries of an XA COMMIT or ROLLBACK of a
// transaction whose preparing session is still closing.
const settleRetry = 10 * time.Millisecond

// settle runs XA COMMIT or XA ROLLBACK of a prepared transaction from any
// session. MariaDB answers XAER_NOTA (unknown XID) both for a transaction
// settled before and for one whose preparing session is still connected
// (it closes asynchronously after PreCommit); XA RECOVER tells them apart,
// and the second kind is tried again until the session is gone.
func (c *Committer[T]) settle(ctx context.Context, stmt, xid string) (known bool, err error) {
	for {
		_, err := c.db.ExecContext(ctx, stmt+" '"+xid+"'")
		if err == nil || !unknownXID(err) {
			return err == nil, err
		}
		listed, rerr := c.Recover(xid)
		if rerr != nil {
			return false, rerr
		}
		if !slices.Contains(listed, xid) {
			return false, nil // settled before
		}
		select {
		case <-time.After(settleRetry):
		case <-ctx.Done():
			return true, fmt.Errorf("still held by the session that prepared it: %w", ctx.Err())
		}
	}
}

// Abort rolls back an open or prepared transaction.
func (c *Committer[T]) Abort(txn *Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	if txn.conn != nil {
		conn := txn.conn
		txn.conn = nil
		defer discard(conn)
		conn.ExecContext(ctx, "XA END '"+txn.XID+"'")
		if _, err := conn.ExecContext(ctx, "XA ROLLBACK '"+txn.XID+"'"); err != nil && !unknownXID(err) {
			return fmt.Errorf("cannot roll back XA transaction %s: %w", txn.XID, err)
		}
		return nil
	}
	return prepared.Rollback(ctx, dialect[T]{c}, txn.XID)
}

// AbortLingering rolls back every prepared transaction of the prefix that
// is not kept (XA RECOVER lists them).
func (c *Committer[T]) AbortLingering(tc weir.TxnContext, keep []*Txn) error {
	ctx, cancel := c.ctx()
	defer cancel()
	var kept []string
	for _, k := range keep {
		kept = append(kept, k.XID)
	}
	return prepared.AbortLingering(ctx, dialect[T]{c}, xidPrefix(tc.Prefix)+"-", kept)
}

// Recover lists the prepared XA transactions whose id starts with prefix.
func (c *Committer[T]) Recover(prefix string) ([]string, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	rows, err := c.db.QueryContext(ctx, "XA RECOVER")
	if err != nil {
		return nil, fmt.Errorf("cannot list prepared XA transactions: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var format, glen, blen int
		var data []byte
		if err := rows.Scan(&format, &glen, &blen, &data); err != nil {
			return nil, fmt.Errorf("cannot list prepared XA transactions: %w", err)
		}
		if x := string(data); strings.HasPrefix(x, prefix) {
			out = append(out, x)
		}
	}
	return out, rows.Err()
}

func (c *Committer[T]) EncodeHandle(txn *Txn) ([]byte, error) { return []byte(txn.XID), nil }

func (c *Committer[T]) DecodeHandle(b []byte) (*Txn, error) {
	x := string(b)
	if !strings.HasPrefix(x, "weir") || len(x) > 64 || strings.ContainsAny(x, "'\\") {
		return nil, fmt.Errorf("invalid XA transaction id %q", x)
	}
	return &Txn{XID: x}, nil
}
