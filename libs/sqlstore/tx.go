package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/cosmic-horizons/fleet/libs/retry"
)

// InTx runs fn in a read-write transaction and commits it when fn returns nil.
// It rolls back when fn returns an error or panics. When the transaction fails
// with a PostgreSQL serialization failure (40001) or deadlock (40P01), or with
// SQLITE_BUSY, InTx rolls back, waits a short backoff and runs fn again, at most
// Config.TxMaxAttempts times in all; fn must therefore have no effect outside tx.
// Errors from fn are returned as they are (wrapped errors stay matchable).
func (db *DB) InTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	return db.InTxWith(ctx, nil, fn)
}

// InTxWith is InTx with transaction options. On SQLite a ReadOnly transaction
// runs on the read pool, in parallel with the writer, and the isolation level
// is ignored: SQLite transactions are always serializable.
func (db *DB) InTxWith(ctx context.Context, opts *sql.TxOptions, fn func(tx *sql.Tx) error) error {
	pool := db.write
	if db.dialect == DialectSQLite && opts != nil {
		if opts.ReadOnly {
			pool = db.read
		}
		opts = nil
	}
	// Waits in [d/2, d], d = TxRetryBackoff·2^(attempt-1) capped at 50·TxRetryBackoff.
	pace := retry.Policy{MaxAttempts: db.cfg.TxMaxAttempts, InitialBackoff: db.cfg.TxRetryBackoff, MaxBackoff: 50 * db.cfg.TxRetryBackoff}
	return retry.Do(ctx, pace, func(int) error {
		err := runTx(ctx, pool, opts, fn)
		if err != nil && !Retryable(err) {
			return retry.Permanent(err)
		}
		return err
	}, func(attempt int, wait time.Duration, err error) {
		db.logger.DebugContext(ctx, "transaction conflict, retrying", "attempt", attempt, "wait", wait, "error", err)
	})
}

func runTx(ctx context.Context, pool *sql.DB, opts *sql.TxOptions, fn func(tx *sql.Tx) error) (err error) {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("sqlstore: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: commit: %w", err)
	}
	committed = true
	return nil
}

// Retryable reports whether err is a transaction conflict that running the
// transaction again can resolve: PostgreSQL 40001 (serialization failure) or
// 40P01 (deadlock detected), or SQLITE_BUSY (any extended code).
func Retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		return liteErr.Code()&0xff == sqlite3.SQLITE_BUSY
	}
	return false
}

// IsUniqueViolation reports whether err is a unique or primary-key constraint
// violation (PostgreSQL 23505, SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	var liteErr *sqlite.Error
	if errors.As(err, &liteErr) {
		c := liteErr.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}
