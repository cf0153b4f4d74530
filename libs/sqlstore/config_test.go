package sqlstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     sqlstore.Config
		wantErr string
	}{
		{name: "sqlite url", cfg: sqlstore.Config{URL: "sqlite:///var/lib/fleet/metrics.db"}},
		{name: "sqlite relative", cfg: sqlstore.Config{URL: "sqlite:metrics.db"}},
		{name: "sqlite memory", cfg: sqlstore.Config{URL: "sqlite::memory:"}},
		{name: "bare path", cfg: sqlstore.Config{URL: "/tmp/metrics.db"}},
		{name: "postgres", cfg: sqlstore.Config{URL: "postgres://u:p@localhost:5432/db?sslmode=disable"}},
		{name: "postgresql", cfg: sqlstore.Config{URL: "postgresql://localhost/db"}},
		{name: "full sync", cfg: sqlstore.Config{URL: "x.db", Synchronous: "full"}},
		{name: "empty url", cfg: sqlstore.Config{}, wantErr: "empty"},
		{name: "unknown scheme", cfg: sqlstore.Config{URL: "mysql://u:secret@h/db"}, wantErr: "unsupported database URL scheme"},
		{name: "sqlite query", cfg: sqlstore.Config{URL: "sqlite:///x.db?mode=ro"}, wantErr: "query parameters"},
		{name: "sqlite no path", cfg: sqlstore.Config{URL: "sqlite://"}, wantErr: "no file path"},
		{name: "bad synchronous", cfg: sqlstore.Config{URL: "x.db", Synchronous: "OFF"}, wantErr: "synchronous"},
		{name: "negative pool", cfg: sqlstore.Config{URL: "x.db", MaxOpenConns: -1}, wantErr: "negative pool"},
		{name: "negative attempts", cfg: sqlstore.Config{URL: "x.db", TxMaxAttempts: -1}, wantErr: "attempts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestOpenSQLiteSettings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		synchronous string
		wantSync    int
	}{
		{name: "default normal", wantSync: 1},
		{name: "full", synchronous: sqlstore.SynchronousFull, wantSync: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "s.db")
			db := sqlstoretest.OpenConfig(t, sqlstore.Config{URL: path, Synchronous: tt.synchronous})
			require.Equal(t, sqlstore.DialectSQLite, db.Dialect())
			ctx := context.Background()
			var mode string
			require.NoError(t, db.Writer().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			require.Equal(t, "wal", mode)
			require.NoError(t, db.Reader().QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode))
			require.Equal(t, "wal", mode)
			for _, pool := range []string{"writer", "reader"} {
				q := db.Writer().QueryRowContext
				if pool == "reader" {
					q = db.Reader().QueryRowContext
				}
				var fk, sync, busy int
				require.NoError(t, q(ctx, "PRAGMA foreign_keys").Scan(&fk), pool)
				require.NoError(t, q(ctx, "PRAGMA synchronous").Scan(&sync), pool)
				require.NoError(t, q(ctx, "PRAGMA busy_timeout").Scan(&busy), pool)
				require.Equal(t, 1, fk, pool)
				require.Equal(t, tt.wantSync, sync, pool)
				require.Equal(t, 5000, busy, pool)
			}
			_, err := db.Reader().ExecContext(ctx, "CREATE TABLE t (x INTEGER)")
			require.Error(t, err, "the read pool is query-only")
		})
	}
}

func TestOpenSQLiteMemory(t *testing.T) {
	t.Parallel()
	db := sqlstoretest.OpenURL(t, "sqlite::memory:")
	ctx := context.Background()
	sqlstoretest.MustExec(t, db, "CREATE TABLE t (x INTEGER)")
	sqlstoretest.MustExec(t, db, "INSERT INTO t (x) VALUES (?)", 7)
	var x int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT x FROM t").Scan(&x))
	require.Equal(t, 7, x)
}

func TestOpenUnreachablePostgres(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := sqlstore.Open(ctx, sqlstore.Config{URL: "postgres://u:secret@127.0.0.1:1/db?connect_timeout=2"}, nil)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}
