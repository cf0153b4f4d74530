// Package sqlstoretest runs a contract suite against every dialect sqlstore
// supports: a fresh SQLite file and a fresh PostgreSQL database per test.
//
// PostgreSQL comes from DATABASE_URL_POSTGRES (as printed by
// `tools/stack/stack.sh env`); the role must be allowed to create databases.
// Each test gets a database of its own, created under a unique name and
// dropped when the test ends. Without DATABASE_URL_POSTGRES the PostgreSQL
// subtest is skipped, or fails under CI=true.
//
//	for _, d := range sqlstoretest.Databases(t) {
//		t.Run(d.Name, func(t *testing.T) {
//			db := d.Open(t)
//			…
//		})
//	}
package sqlstoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/testinfra"
)

// EnvPostgresURL names the variable holding the PostgreSQL server URL.
const EnvPostgresURL = "DATABASE_URL_POSTGRES"

// NamedDB is one dialect of the contract suite.
type NamedDB struct {
	// Name is the dialect name, for t.Run.
	Name    string
	Dialect sqlstore.Dialect
	// URL creates a fresh, empty database, returns its URL and drops or
	// removes it when t ends. On PostgreSQL without DATABASE_URL_POSTGRES it
	// skips t (fails it under CI=true).
	URL func(t testing.TB) string
	// Open is URL followed by sqlstore.Open with cfg's defaults; the DB is
	// closed when t ends.
	Open func(t testing.TB) *sqlstore.DB
}

// Databases returns the SQLite and PostgreSQL entries of the contract suite.
func Databases(t testing.TB) []NamedDB {
	t.Helper()
	return []NamedDB{
		named(sqlstore.DialectSQLite, sqliteURL),
		named(sqlstore.DialectPostgres, postgresURL),
	}
}

// Run runs fn once per dialect in a subtest of its name, with a fresh database.
func Run(t *testing.T, fn func(t *testing.T, db *sqlstore.DB)) {
	t.Helper()
	for _, d := range Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			fn(t, d.Open(t))
		})
	}
}

// OpenURL opens url with the default configuration and closes it when t ends.
func OpenURL(t testing.TB, url string) *sqlstore.DB {
	t.Helper()
	return OpenConfig(t, sqlstore.Config{URL: url})
}

// OpenConfig opens cfg and closes the DB when t ends.
func OpenConfig(t testing.TB, cfg sqlstore.Config) *sqlstore.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sqlstore.Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open %s database: %v", cfg.URL, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func named(d sqlstore.Dialect, newURL func(testing.TB) string) NamedDB {
	return NamedDB{
		Name:    string(d),
		Dialect: d,
		URL:     newURL,
		Open: func(t testing.TB) *sqlstore.DB {
			t.Helper()
			return OpenURL(t, newURL(t))
		},
	}
}

func sqliteURL(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
}

func postgresURL(t testing.TB) string {
	t.Helper()
	admin := os.Getenv(EnvPostgresURL)
	if admin == "" {
		testinfra.Unavailable(t, "PostgreSQL: %s is not set", EnvPostgresURL)
	}
	cfg, err := pgx.ParseConfig(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgresURL, err)
	}
	name := "sqlstoretest_" + randomHex(t, 8)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create PostgreSQL test database (the role needs CREATEDB): %v", err)
	}
	t.Cleanup(func() { dropDatabase(t, cfg, name) })

	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgresURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

func dropDatabase(t testing.TB, cfg *pgx.ConnConfig, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	// FORCE terminates sessions still attached (a killed child process's
	// backend may linger a moment); retry a transient failure a few times.
	var err error
	for attempt := range 5 {
		if _, err = db.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err == nil {
			return
		}
		time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
	}
	t.Errorf("drop PostgreSQL test database %s: %v", name, err)
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random name: %v", err)
	}
	return hex.EncodeToString(b)
}

// Count returns the result of a `SELECT count(*) …` style query on the writer
// (so it sees everything committed), failing t on error.
func Count(t testing.TB, db *sqlstore.DB, query string, args ...any) int64 {
	t.Helper()
	var n sql.NullInt64
	if err := db.Writer().QueryRowContext(context.Background(), db.Rebind(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n.Int64
}

// MustExec runs a statement (rebound for db's dialect), failing t on error.
func MustExec(t testing.TB, db *sqlstore.DB, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), db.Rebind(query), args...); err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf("%.80s", query), err)
	}
}

// RowCounts returns the number of rows of every table of db, by table name:
// a snapshot to compare before and after a call that must write nothing.
func RowCounts(t testing.TB, db *sqlstore.DB) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	q := `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if db.Dialect() == sqlstore.DialectPostgres {
		q = `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY table_name`
	}
	rows, err := db.Writer().QueryContext(ctx, q)
	if err != nil {
		t.Fatalf("list tables: %v", err)
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatalf("list tables: %v", err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("list tables: %v", err)
	}
	_ = rows.Close()
	out := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		if err := db.Writer().QueryRowContext(ctx, `SELECT count(*) FROM "`+n+`"`).Scan(&c); err != nil {
			t.Fatalf("count %s: %v", n, err)
		}
		out[n] = c
	}
	return out
}
