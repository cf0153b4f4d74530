// Package sqlstore is the one SQL store helper of the fleet: it opens SQLite
// (modernc.org/sqlite, pure Go) or PostgreSQL (pgx) behind the same *DB,
// applies versioned migrations and runs transactions with bounded retries.
//
// Repositories write their queries once with `?` placeholders and pass them
// through DB.Rebind, which turns them into `$1, $2, …` on PostgreSQL.
//
// # SQLite
//
// A SQLite database opened here runs in WAL mode with foreign keys on and a
// busy timeout. SQLite allows one writer at a time, so DB keeps two pools over
// the same file: a write pool of exactly one connection, used by InTx and
// ExecContext, whose transactions start with BEGIN IMMEDIATE, and a read pool
// (Config.MaxOpenConns connections, query_only) used by QueryContext,
// QueryRowContext and read-only transactions. Concurrent writers in one process
// queue for the write connection instead of failing with SQLITE_BUSY; readers
// run in parallel with the writer thanks to WAL. An in-memory database
// ("sqlite::memory:") lives in a single connection shared by reads and writes.
//
// Durability: the default synchronous=NORMAL in WAL mode never corrupts the
// database and loses nothing when the process crashes, but an operating-system
// crash or power loss may roll back the last transactions committed before it.
// A consumer that commits Kafka offsets after its handler returns, and does not
// resume from the offsets kept in its own store, must set Synchronous to FULL.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// Dialect names the SQL engine behind a DB.
type Dialect string

// Supported dialects.
const (
	DialectSQLite   Dialect = "sqlite"
	DialectPostgres Dialect = "postgres"
)

// SQLite synchronous levels accepted by Config.Synchronous.
const (
	SynchronousNormal = "NORMAL"
	SynchronousFull   = "FULL"
)

// Config configures Open. Zero values take the defaults documented per field.
type Config struct {
	// URL selects the database: "postgres://…" or "postgresql://…" for
	// PostgreSQL; "sqlite:///abs/path.db", "sqlite:relative.db",
	// "sqlite::memory:" or a bare file path for SQLite.
	URL string
	// MaxOpenConns bounds the PostgreSQL pool (default 10) or the SQLite read
	// pool (default 4). The SQLite write pool always has one connection.
	MaxOpenConns int
	// MaxIdleConns defaults to MaxOpenConns.
	MaxIdleConns int
	// ConnMaxLifetime recycles connections; default 30m on PostgreSQL, never on SQLite.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime closes idle connections; default 5m on PostgreSQL, never on SQLite.
	ConnMaxIdleTime time.Duration
	// BusyTimeout is how long a SQLite connection waits for a lock held by
	// another process before failing with SQLITE_BUSY; default 5s.
	BusyTimeout time.Duration
	// Synchronous is the SQLite synchronous level: NORMAL (default) or FULL.
	// See the package documentation for what each one guarantees.
	Synchronous string
	// TxMaxAttempts bounds the attempts of InTx when a transaction fails with
	// a serialization failure, a deadlock or SQLITE_BUSY; default 5.
	TxMaxAttempts int
	// TxRetryBackoff is the wait before the second attempt; it doubles on each
	// further attempt, with jitter, up to 50 times its value. Default 5ms.
	TxRetryBackoff time.Duration
}

func (c Config) withDefaults(d Dialect) Config {
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 4
		if d == DialectPostgres {
			c.MaxOpenConns = 10
		}
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = c.MaxOpenConns
	}
	if d == DialectPostgres {
		if c.ConnMaxLifetime == 0 {
			c.ConnMaxLifetime = 30 * time.Minute
		}
		if c.ConnMaxIdleTime == 0 {
			c.ConnMaxIdleTime = 5 * time.Minute
		}
	}
	if c.BusyTimeout == 0 {
		c.BusyTimeout = 5 * time.Second
	}
	if c.Synchronous == "" {
		c.Synchronous = SynchronousNormal
	}
	c.Synchronous = strings.ToUpper(c.Synchronous)
	if c.TxMaxAttempts == 0 {
		c.TxMaxAttempts = 5
	}
	if c.TxRetryBackoff == 0 {
		c.TxRetryBackoff = 5 * time.Millisecond
	}
	return c
}

// Validate reports the first setting that cannot work. Zero values are
// replaced by defaults before Open validates.
func (c Config) Validate() error {
	if _, _, err := parseURL(c.URL); err != nil {
		return err
	}
	switch {
	case c.MaxOpenConns < 0 || c.MaxIdleConns < 0:
		return fmt.Errorf("sqlstore: negative pool size (max open %d, max idle %d)", c.MaxOpenConns, c.MaxIdleConns)
	case c.ConnMaxLifetime < 0 || c.ConnMaxIdleTime < 0 || c.BusyTimeout < 0 || c.TxRetryBackoff < 0:
		return errors.New("sqlstore: negative duration in config")
	case c.TxMaxAttempts < 0:
		return fmt.Errorf("sqlstore: tx max attempts %d < 0", c.TxMaxAttempts)
	}
	switch strings.ToUpper(c.Synchronous) {
	case "", SynchronousNormal, SynchronousFull:
	default:
		return fmt.Errorf("sqlstore: synchronous %q is neither NORMAL nor FULL", c.Synchronous)
	}
	return nil
}

// sqliteMemory is the SQLite target of an in-memory database.
const sqliteMemory = ":memory:"

// parseURL returns the dialect and the driver-level target: a PostgreSQL URL
// or a SQLite file path.
func parseURL(raw string) (Dialect, string, error) {
	switch {
	case raw == "":
		return "", "", errors.New("sqlstore: database URL is empty")
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return DialectPostgres, raw, nil
	}
	path := raw
	if rest, ok := strings.CutPrefix(raw, "sqlite:"); ok {
		path = strings.TrimPrefix(rest, "//")
	} else if strings.Contains(raw, "://") {
		return "", "", fmt.Errorf("sqlstore: unsupported database URL scheme in %q (want postgres://, postgresql:// or sqlite:)", redact(raw))
	}
	switch {
	case path == "":
		return "", "", fmt.Errorf("sqlstore: SQLite URL %q has no file path", raw)
	case strings.ContainsAny(path, "?#"):
		return "", "", fmt.Errorf("sqlstore: SQLite URL %q: query parameters are not supported, use Config fields", raw)
	}
	return DialectSQLite, path, nil
}

// redact hides a password in a URL for error messages and logs.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}

// DB is an open database: one pool on PostgreSQL, a single-connection write
// pool and a read pool on SQLite. It is safe for concurrent use.
type DB struct {
	dialect Dialect
	write   *sql.DB
	read    *sql.DB
	cfg     Config
	logger  *slog.Logger
}

// Open connects to the database cfg.URL names, applies the SQLite settings and
// checks the connection.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*DB, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	dialect, target, _ := parseURL(cfg.URL)
	cfg = cfg.withDefaults(dialect)
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db := &DB{dialect: dialect, cfg: cfg, logger: logger.With("component", "sqlstore", "dialect", string(dialect))}
	var err error
	switch dialect {
	case DialectPostgres:
		err = db.openPostgres(target)
	default:
		err = db.openSQLite(target)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

func (db *DB) openPostgres(target string) error {
	pgcfg, err := pgx.ParseConfig(target)
	if err != nil {
		return fmt.Errorf("sqlstore: parse PostgreSQL URL %s: %w", redact(target), err)
	}
	pool := stdlib.OpenDB(*pgcfg)
	pool.SetMaxOpenConns(db.cfg.MaxOpenConns)
	pool.SetMaxIdleConns(db.cfg.MaxIdleConns)
	pool.SetConnMaxLifetime(db.cfg.ConnMaxLifetime)
	pool.SetConnMaxIdleTime(db.cfg.ConnMaxIdleTime)
	db.write, db.read = pool, pool
	return nil
}

func (db *DB) openSQLite(path string) error {
	common := url.Values{}
	common.Set("_busy_timeout", strconv.FormatInt(db.cfg.BusyTimeout.Milliseconds(), 10))
	common.Set("_foreign_keys", "1")
	common.Set("_synchronous", db.cfg.Synchronous)

	if path == sqliteMemory {
		// Every connection to ":memory:" is a database of its own: keep exactly
		// one, for reads and writes alike, and never recycle it.
		pool, err := sql.Open("sqlite", sqliteMemory+"?"+common.Encode())
		if err != nil {
			return fmt.Errorf("sqlstore: open SQLite in memory: %w", err)
		}
		pool.SetMaxOpenConns(1)
		pool.SetMaxIdleConns(1)
		db.write, db.read = pool, pool
		return nil
	}

	w := url.Values{}
	for k, v := range common {
		w[k] = v
	}
	// WAL is persistent in the file; setting it on the writer is enough.
	w.Set("_journal_mode", "WAL")
	// BEGIN IMMEDIATE takes the write lock up front, so a transaction never
	// fails half-way upgrading a read lock while another process writes.
	w.Set("_txlock", "immediate")
	write, err := sql.Open("sqlite", path+"?"+w.Encode())
	if err != nil {
		return fmt.Errorf("sqlstore: open SQLite %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(db.cfg.ConnMaxLifetime)
	write.SetConnMaxIdleTime(db.cfg.ConnMaxIdleTime)

	r := url.Values{}
	for k, v := range common {
		r[k] = v
	}
	r.Set("_query_only", "1")
	read, err := sql.Open("sqlite", path+"?"+r.Encode())
	if err != nil {
		write.Close()
		return fmt.Errorf("sqlstore: open SQLite %s: %w", path, err)
	}
	read.SetMaxOpenConns(db.cfg.MaxOpenConns)
	read.SetMaxIdleConns(db.cfg.MaxIdleConns)
	read.SetConnMaxLifetime(db.cfg.ConnMaxLifetime)
	read.SetConnMaxIdleTime(db.cfg.ConnMaxIdleTime)
	db.write, db.read = write, read
	return nil
}

// Dialect reports the SQL engine behind db.
func (db *DB) Dialect() Dialect { return db.dialect }

// Ping checks the write pool (which, on SQLite, also switches a new file to
// WAL) and then the read pool.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlstore: ping %s: %w", db.dialect, err)
	}
	if db.read != db.write {
		if err := db.read.PingContext(ctx); err != nil {
			return fmt.Errorf("sqlstore: ping %s readers: %w", db.dialect, err)
		}
	}
	return nil
}

// Check is Ping under the name readiness checks use.
func (db *DB) Check(ctx context.Context) error { return db.Ping(ctx) }

// Close closes the pools.
func (db *DB) Close() error {
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// Writer is the pool that writes: the single SQLite write connection, or the
// PostgreSQL pool. Prefer InTx and ExecContext.
func (db *DB) Writer() *sql.DB { return db.write }

// Reader is the pool for queries: the SQLite read pool, or the PostgreSQL pool.
func (db *DB) Reader() *sql.DB { return db.read }

// ExecContext runs a statement outside an explicit transaction on the writer.
// The query is used as given: pass it through Rebind first.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return db.write.ExecContext(ctx, query, args...)
}

// QueryContext runs a query on the read pool. The query is used as given.
// On SQLite it sees committed data only; inside InTx query the *sql.Tx instead.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.read.QueryContext(ctx, query, args...)
}

// QueryRowContext runs a single-row query on the read pool. The query is used as given.
func (db *DB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return db.read.QueryRowContext(ctx, query, args...)
}

// Rebind rewrites the `?` placeholders of query for db's dialect: unchanged on
// SQLite, `$1, $2, …` on PostgreSQL.
func (db *DB) Rebind(query string) string { return Rebind(db.dialect, query) }

// Rebind rewrites the `?` placeholders of query for dialect d. Question marks
// inside string literals, quoted identifiers and comments are left alone, so
// a query already in `$n` form passes through unchanged. PostgreSQL operators
// spelled with `?` (jsonb `?`, `?|`, `?&`) cannot be written in a rebound query.
func Rebind(d Dialect, query string) string {
	if d != DialectPostgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		case c == '\'' || c == '"':
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
			continue
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+1])
			i += end
			continue
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			end := strings.Index(query[i+2:], "*/")
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+4])
			i += end + 3
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
