package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"time"

	drv "github.com/go-sql-driver/mysql"
)

// Admin settles the sink's prepared XA transactions from outside a job, for
// operators (weir txn): it lists them by transaction name prefix (the
// prefixes a checkpoint's sink state records, weir.TwoPhaseCommitUnit),
// commits and rolls them back. It needs no table.
type Admin struct {
	c *Committer[struct{}]
}

// NewAdmin connects to the server of dsn.
func NewAdmin(dsn string) (*Admin, error) {
	cfg, err := drv.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql: bad DSN: %w", err)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("mysql: %w", err)
	}
	c := &Committer[struct{}]{db: db, opts: Options{Timeout: time.Minute}}
	ctx, cancel := c.ctx()
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql: cannot reach %s: %w", cfg.Addr, err)
	}
	return &Admin{c: c}, nil
}

// Close releases the connections.
func (a *Admin) Close() error { return a.c.db.Close() }

// TransactionID returns the XA id in a handle the sink stored in a
// checkpoint, and whether the handle is this sink's and belongs to
// transaction name prefix (handles of other sinks are not).
func TransactionID(prefix string, handle []byte) (string, bool) {
	x := string(handle)
	if len(x) > 64 || strings.ContainsAny(x, "'\\") || !strings.HasPrefix(x, xidPrefix(prefix)+"-") {
		return "", false
	}
	return x, true
}

// Prepared lists the ids of the prepared XA transactions (XA RECOVER) of
// transaction name prefix, sorted.
func (a *Admin) Prepared(_ context.Context, prefix string) ([]string, error) {
	xids, err := a.c.Recover(xidPrefix(prefix) + "-")
	if err != nil {
		return nil, err
	}
	slices.Sort(xids)
	return xids, nil
}

// Commit commits prepared XA transaction xid (XA COMMIT). known is false
// when the server has no prepared transaction xid: it was settled before.
func (a *Admin) Commit(ctx context.Context, xid string) (known bool, err error) {
	return a.settle(ctx, "XA COMMIT", xid)
}

// Rollback rolls back prepared XA transaction xid (XA ROLLBACK); known as
// for Commit.
func (a *Admin) Rollback(ctx context.Context, xid string) (known bool, err error) {
	return a.settle(ctx, "XA ROLLBACK", xid)
}

func (a *Admin) settle(ctx context.Context, stmt, xid string) (bool, error) {
	if !strings.HasPrefix(xid, "weir") || len(xid) > 64 || strings.ContainsAny(xid, "'\\") {
		return false, fmt.Errorf("invalid XA transaction id %q", xid)
	}
	ctx, cancel := context.WithTimeout(ctx, a.c.opts.Timeout)
	defer cancel()
	return a.c.settle(ctx, stmt, xid)
}
