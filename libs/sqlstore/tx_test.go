package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

func createCounter(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	sqlstoretest.MustExec(t, db, "CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
	sqlstoretest.MustExec(t, db, "INSERT INTO counter (id, n) VALUES (1, 0)")
}

// increment reads and writes back the counter, which loses updates unless
// transactions are serialized.
func increment(ctx context.Context, db *sqlstore.DB, tx *sql.Tx) error {
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT n FROM counter WHERE id = 1").Scan(&n); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, db.Rebind("UPDATE counter SET n = ? WHERE id = 1"), n+1)
	return err
}

func TestInTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	errBoom := errors.New("boom")
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()

			t.Run("commit and rebind", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				sqlstoretest.MustExec(t, db, "CREATE TABLE kv (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
				require.NoError(t, db.InTx(ctx, func(tx *sql.Tx) error {
					_, err := tx.ExecContext(ctx, db.Rebind("INSERT INTO kv (k, v) VALUES (?, ?), (?, ?)"), "a", 1, "b", 2)
					return err
				}))
				var v int
				require.NoError(t, db.QueryRowContext(ctx, db.Rebind("SELECT v FROM kv WHERE k = ?"), "b").Scan(&v))
				require.Equal(t, 2, v)
			})

			t.Run("rollback on error", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				createCounter(t, db)
				err := db.InTx(ctx, func(tx *sql.Tx) error {
					if err := increment(ctx, db, tx); err != nil {
						return err
					}
					return errBoom
				})
				require.ErrorIs(t, err, errBoom)
				require.EqualValues(t, 0, sqlstoretest.Count(t, db, "SELECT n FROM counter"))
			})

			t.Run("rollback on panic", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				createCounter(t, db)
				require.Panics(t, func() {
					_ = db.InTx(ctx, func(tx *sql.Tx) error {
						require.NoError(t, increment(ctx, db, tx))
						panic("handler bug")
					})
				})
				require.EqualValues(t, 0, sqlstoretest.Count(t, db, "SELECT n FROM counter"))
				require.NoError(t, db.InTx(ctx, func(tx *sql.Tx) error { return increment(ctx, db, tx) }), "the connection is usable again")
			})

			t.Run("read-only transaction cannot write", func(t *testing.T) {
				t.Parallel()
				db := d.Open(t)
				createCounter(t, db)
				err := db.InTxWith(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error { return increment(ctx, db, tx) })
				require.Error(t, err)
				var n int
				require.NoError(t, db.InTxWith(ctx, &sql.TxOptions{ReadOnly: true}, func(tx *sql.Tx) error {
					return tx.QueryRowContext(ctx, "SELECT n FROM counter").Scan(&n)
				}))
				require.Zero(t, n)
			})

			t.Run("concurrent increments are exact", func(t *testing.T) {
				t.Parallel()
				// Two handles on one database stand for two processes; on
				// PostgreSQL the transactions are serializable, so conflicts
				// surface as 40001 and are retried.
				url := d.URL(t)
				cfg := sqlstore.Config{URL: url, TxMaxAttempts: 1000}
				dbs := []*sqlstore.DB{sqlstoretest.OpenConfig(t, cfg), sqlstoretest.OpenConfig(t, cfg)}
				createCounter(t, dbs[0])
				const goroutines, increments = 8, 100
				errs := make(chan error, goroutines*increments)
				var wg sync.WaitGroup
				for g := range goroutines {
					db := dbs[g%len(dbs)]
					wg.Go(func() {
						for range increments {
							errs <- db.InTxWith(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable}, func(tx *sql.Tx) error {
								return increment(ctx, db, tx)
							})
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err)
				}
				require.EqualValues(t, goroutines*increments, sqlstoretest.Count(t, dbs[0], "SELECT n FROM counter"))
			})
		})
	}
}

func TestInTxGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			url := d.URL(t)
			db := sqlstoretest.OpenConfig(t, sqlstore.Config{URL: url, TxMaxAttempts: 3})
			// A second handle that does not wait for locks, for SQLITE_BUSY.
			other := sqlstoretest.OpenConfig(t, sqlstore.Config{URL: url, BusyTimeout: time.Nanosecond, TxMaxAttempts: 1})
			calls := 0
			err := db.InTx(ctx, func(tx *sql.Tx) error {
				calls++
				return conflictError(ctx, db, other, tx)
			})
			require.Error(t, err)
			require.True(t, sqlstore.Retryable(err), "error %v", err)
			require.Equal(t, 3, calls)
		})
	}
}

// conflictError produces a genuine conflict error from the database:
// SQLITE_BUSY from a second handle that finds the write lock taken by tx, or
// a PostgreSQL serialization failure raised on purpose.
func conflictError(ctx context.Context, db, other *sqlstore.DB, tx *sql.Tx) error {
	if db.Dialect() == sqlstore.DialectPostgres {
		_, err := tx.ExecContext(ctx, "DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$")
		return err
	}
	return other.InTx(ctx, func(*sql.Tx) error { return nil })
}
