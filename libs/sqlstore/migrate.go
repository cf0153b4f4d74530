package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
)

// DefaultComponent is the component of migrations applied without WithComponent.
const DefaultComponent = "app"

// ErrChecksumMismatch is returned by Migrate when an applied migration's file
// has changed since it was applied. Migrations are immutable: add a new one.
var ErrChecksumMismatch = errors.New("applied migration was modified")

// MigrateOption adjusts Migrate.
type MigrateOption func(*migrateOptions)

type migrateOptions struct{ component string }

// WithComponent keeps the versions of one set of migrations apart from those
// of another set in the same database: a library such as the inbox migrates
// as its own component, so its 0001 never collides with the service's 0001.
func WithComponent(name string) MigrateOption {
	return func(o *migrateOptions) { o.component = name }
}

// Migration is one versioned migration file chosen for a dialect.
type Migration struct {
	Version  int
	Name     string
	File     string // path inside the fs.FS
	SQL      string
	Checksum string // hex SHA-256 of SQL
}

// migrationFile matches 0001_name.sql, 0001_name.postgres.sql and 0001_name.sqlite.sql.
var migrationFile = regexp.MustCompile(`^(\d+)_([A-Za-z0-9_]+?)(?:\.(postgres|sqlite))?\.sql$`)

// LoadMigrations reads the migrations in dir of fsys for dialect d, in version
// order. A file named for d (0001_x.sqlite.sql) wins over the common file of
// the same version (0001_x.sql); a file for the other dialect is ignored.
// Files not ending in .sql are ignored; a .sql file with another name, a
// version below 1 or two names for one version is an error.
func LoadMigrations(fsys fs.FS, dir string, d Dialect) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: read migrations %s: %w", dir, err)
	}
	type candidate struct {
		name, file string
		specific   bool
	}
	chosen := make(map[int]candidate)
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		m := migrationFile.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("sqlstore: migration file %q: want NNNN_name.sql or NNNN_name.{postgres,sqlite}.sql", e.Name())
		}
		version, err := strconv.Atoi(m[1])
		if err != nil || version < 1 {
			return nil, fmt.Errorf("sqlstore: migration file %q: version must be a positive integer", e.Name())
		}
		if m[3] != "" && Dialect(m[3]) != d {
			continue
		}
		c := candidate{name: m[2], file: path.Join(dir, e.Name()), specific: m[3] != ""}
		prev, seen := chosen[version]
		switch {
		case !seen:
			chosen[version] = c
		case prev.name != c.name:
			return nil, fmt.Errorf("sqlstore: migration version %d has two names: %q and %q", version, prev.name, c.name)
		case c.specific:
			chosen[version] = c
		}
	}
	out := make([]Migration, 0, len(chosen))
	for version, c := range chosen {
		body, err := fs.ReadFile(fsys, c.file)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: read migration %s: %w", c.file, err)
		}
		sum := sha256.Sum256(body)
		out = append(out, Migration{Version: version, Name: c.name, File: c.file, SQL: string(body), Checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	return out, nil
}

// Migrate applies the migrations in dir of fsys that db has not applied yet,
// in version order, each in its own transaction together with its row in
// schema_migrations(component, version, name, applied_at, checksum).
//
// It refuses to run (and applies nothing) when an applied migration's file
// changed (ErrChecksumMismatch) or when a pending migration is older than one
// already applied. A version recorded in the database but missing from fsys
// (a newer release ran first) is logged and tolerated. Re-running is a no-op.
//
// Several processes may migrate the same database at once: on PostgreSQL they
// serialize on an advisory lock; on SQLite on the write lock, and each
// transaction re-checks its version before applying it.
func Migrate(ctx context.Context, db *DB, fsys fs.FS, dir string, opts ...MigrateOption) error {
	o := migrateOptions{component: DefaultComponent}
	for _, opt := range opts {
		opt(&o)
	}
	if o.component == "" {
		return errors.New("sqlstore: migrate: empty component")
	}
	migrations, err := LoadMigrations(fsys, dir, db.dialect)
	if err != nil {
		return err
	}

	conn, err := db.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate: get connection: %w", err)
	}
	defer conn.Close()

	if db.dialect == DialectPostgres {
		key := migrationLockKey()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return fmt.Errorf("sqlstore: migrate: take advisory lock: %w", err)
		}
		defer func() {
			// A fresh context: the lock must be released even when ctx is done.
			if _, err := conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key); err != nil {
				db.logger.Warn("release migration lock", "error", err)
			}
		}()
	}

	if _, err := conn.ExecContext(ctx, db.schemaMigrationsDDL()); err != nil {
		return fmt.Errorf("sqlstore: migrate: create schema_migrations: %w", err)
	}
	applied, err := db.appliedMigrations(ctx, conn, o.component)
	if err != nil {
		return err
	}
	if err := checkApplied(o.component, migrations, applied); err != nil {
		return err
	}
	for _, m := range migrations {
		if _, ok := applied[m.Version]; ok {
			continue
		}
		if err := db.applyMigration(ctx, conn, o.component, m); err != nil {
			return err
		}
	}
	for v := range applied {
		if !slices.ContainsFunc(migrations, func(m Migration) bool { return m.Version == v }) {
			db.logger.WarnContext(ctx, "database has a migration this binary does not know", "component", o.component, "version", v)
		}
	}
	return nil
}

type appliedMigration struct{ name, checksum string }

func checkApplied(component string, migrations []Migration, applied map[int]appliedMigration) error {
	maxApplied := 0
	for v := range applied {
		maxApplied = max(maxApplied, v)
	}
	for _, m := range migrations {
		a, ok := applied[m.Version]
		switch {
		case ok && a.checksum != m.Checksum:
			return fmt.Errorf("sqlstore: migration %s %04d_%s: %w (checksum %s in the database, %s in %s)",
				component, m.Version, m.Name, ErrChecksumMismatch, a.checksum, m.Checksum, m.File)
		case !ok && m.Version < maxApplied:
			return fmt.Errorf("sqlstore: migration %s %04d_%s is pending but %04d is already applied; renumber it after %04d",
				component, m.Version, m.Name, maxApplied, maxApplied)
		}
	}
	return nil
}

func (db *DB) schemaMigrationsDDL() string {
	if db.dialect == DialectPostgres {
		return `CREATE TABLE IF NOT EXISTS schema_migrations (
	component  TEXT        NOT NULL,
	version    INTEGER     NOT NULL,
	name       TEXT        NOT NULL,
	applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
	checksum   TEXT        NOT NULL,
	PRIMARY KEY (component, version)
)`
	}
	return `CREATE TABLE IF NOT EXISTS schema_migrations (
	component  TEXT    NOT NULL,
	version    INTEGER NOT NULL,
	name       TEXT    NOT NULL,
	applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
	checksum   TEXT    NOT NULL,
	PRIMARY KEY (component, version)
)`
}

func (db *DB) appliedMigrations(ctx context.Context, conn *sql.Conn, component string) (map[int]appliedMigration, error) {
	rows, err := conn.QueryContext(ctx, db.Rebind("SELECT version, name, checksum FROM schema_migrations WHERE component = ?"), component)
	if err != nil {
		return nil, fmt.Errorf("sqlstore: migrate: read schema_migrations: %w", err)
	}
	defer rows.Close()
	out := make(map[int]appliedMigration)
	for rows.Next() {
		var v int
		var a appliedMigration
		if err := rows.Scan(&v, &a.name, &a.checksum); err != nil {
			return nil, fmt.Errorf("sqlstore: migrate: read schema_migrations: %w", err)
		}
		out[v] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlstore: migrate: read schema_migrations: %w", err)
	}
	return out, nil
}

func (db *DB) applyMigration(ctx context.Context, conn *sql.Conn, component string, m Migration) (err error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlstore: migrate %s %04d_%s: begin: %w", component, m.Version, m.Name, err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// Another process may have applied it since we looked (SQLite has no
	// advisory lock; BEGIN IMMEDIATE serializes us behind it).
	var sum string
	err = tx.QueryRowContext(ctx, db.Rebind("SELECT checksum FROM schema_migrations WHERE component = ? AND version = ?"), component, m.Version).Scan(&sum)
	switch {
	case err == nil:
		if sum != m.Checksum {
			return fmt.Errorf("sqlstore: migration %s %04d_%s: %w", component, m.Version, m.Name, ErrChecksumMismatch)
		}
		return tx.Commit()
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("sqlstore: migrate %s %04d_%s: %w", component, m.Version, m.Name, err)
	}
	if _, err = tx.ExecContext(ctx, m.SQL); err != nil {
		return fmt.Errorf("sqlstore: migrate %s %04d_%s (%s): %w", component, m.Version, m.Name, m.File, err)
	}
	if _, err = tx.ExecContext(ctx, db.Rebind("INSERT INTO schema_migrations (component, version, name, checksum) VALUES (?, ?, ?, ?)"),
		component, m.Version, m.Name, m.Checksum); err != nil {
		return fmt.Errorf("sqlstore: migrate %s %04d_%s: record: %w", component, m.Version, m.Name, err)
	}
	if err = tx.Commit(); err != nil {
		return fmt.Errorf("sqlstore: migrate %s %04d_%s: commit: %w", component, m.Version, m.Name, err)
	}
	db.logger.InfoContext(ctx, "applied migration", "component", component, "version", m.Version, "name", m.Name)
	return nil
}

// migrationLockKey is the PostgreSQL advisory lock key migrations serialize
// on. It is one key for all components: they share schema_migrations, whose
// concurrent CREATE TABLE IF NOT EXISTS is not safe on PostgreSQL.
func migrationLockKey() int64 {
	h := fnv.New64a()
	h.Write([]byte("github.com/cosmic-horizons/fleet/libs/sqlstore.Migrate"))
	return int64(h.Sum64())
}
