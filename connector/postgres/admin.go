package postgres

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Admin settles the sink's prepared transactions from outside a job, for
// operators (weir txn): it lists them by transaction name prefix (the
// prefixes a checkpoint's sink state records, weir.TwoPhaseCommitUnit),
// commits and rolls them back. It needs no table.
type Admin struct {
	pool    *pgxpool.Pool
	timeout time.Duration
}

// NewAdmin connects to the server of dsn.
func NewAdmin(dsn string) (*Admin, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: bad DSN: %w", err)
	}
	a := &Admin{timeout: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: cannot connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	a.pool = pool
	return a, nil
}

// Close releases the connections.
func (a *Admin) Close() { a.pool.Close() }

// TransactionID returns the gid of the sink's transaction in a handle the
// sink stored in a checkpoint, and whether the handle is this sink's and
// belongs to transaction name prefix (handles of other sinks are not).
func TransactionID(prefix string, handle []byte) (string, bool) {
	g := string(handle)
	if g == "" || gidUnsafe.MatchString(g) || !strings.HasPrefix(g, gidOf(prefix)+"-") {
		return "", false
	}
	return g, true
}

// Prepared lists the gids of the prepared transactions (pg_prepared_xacts)
// of transaction name prefix, sorted.
func (a *Admin) Prepared(ctx context.Context, prefix string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	gids, err := dialect{a.pool}.Prepared(ctx, gidOf(prefix)+"-")
	if err != nil {
		return nil, fmt.Errorf("cannot list prepared transactions: %w", err)
	}
	slices.Sort(gids)
	return gids, nil
}

// Commit commits prepared transaction gid (COMMIT PREPARED). known is false
// when the server has no prepared transaction gid: it was settled before.
func (a *Admin) Commit(ctx context.Context, gid string) (known bool, err error) {
	return a.settle(ctx, gid, true)
}

// Rollback rolls back prepared transaction gid (ROLLBACK PREPARED); known
// as for Commit.
func (a *Admin) Rollback(ctx context.Context, gid string) (known bool, err error) {
	return a.settle(ctx, gid, false)
}

func (a *Admin) settle(ctx context.Context, gid string, commit bool) (bool, error) {
	if gid == "" || gidUnsafe.MatchString(gid) {
		return false, fmt.Errorf("invalid transaction id %q", gid)
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	return dialect{a.pool}.Settle(ctx, gid, commit)
}
