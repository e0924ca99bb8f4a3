// Package prepared is the part of two-phase commit that SQL databases
// share: settling prepared transactions by id from any session (PostgreSQL's
// PREPARE TRANSACTION / COMMIT PREPARED, MySQL's XA), and finding the ones
// a crashed attempt left behind. A database supplies its Dialect; the
// rules live here once:
//
//   - Commit of an id the database does not know succeeds: only the sink
//     prepares and settles its ids, so an unknown id was committed before
//     (a crash between the commit and the checkpoint's notification).
//   - Rollback of an unknown id succeeds the same way.
//   - AbortLingering rolls back every prepared transaction whose id starts
//     with prefix, except those kept (the restored checkpoint's).
package prepared

import (
	"context"
	"fmt"
	"slices"
)

// Dialect is one database's statements for prepared transactions.
type Dialect interface {
	// Settle commits (commit) or rolls back prepared transaction id from
	// any session. known is false when the database knows no prepared
	// transaction id.
	Settle(ctx context.Context, id string, commit bool) (known bool, err error)
	// Prepared lists the ids of the prepared transactions starting with
	// prefix.
	Prepared(ctx context.Context, prefix string) ([]string, error)
}

// Commit commits prepared transaction id; an unknown id was committed
// before.
func Commit(ctx context.Context, d Dialect, id string) error {
	if _, err := d.Settle(ctx, id, true); err != nil {
		return fmt.Errorf("cannot commit prepared transaction %s: %w", id, err)
	}
	return nil
}

// Rollback rolls back prepared transaction id; an unknown id was settled
// before.
func Rollback(ctx context.Context, d Dialect, id string) error {
	if _, err := d.Settle(ctx, id, false); err != nil {
		return fmt.Errorf("cannot roll back prepared transaction %s: %w", id, err)
	}
	return nil
}

// AbortLingering rolls back every prepared transaction whose id starts
// with prefix and is not in keep.
func AbortLingering(ctx context.Context, d Dialect, prefix string, keep []string) error {
	ids, err := d.Prepared(ctx, prefix)
	if err != nil {
		return fmt.Errorf("cannot list prepared transactions: %w", err)
	}
	for _, id := range ids {
		if slices.Contains(keep, id) {
			continue
		}
		if err := Rollback(ctx, d, id); err != nil {
			return err
		}
	}
	return nil
}
