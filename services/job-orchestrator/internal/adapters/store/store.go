// Package store is the job-orchestrator's SQL adapter: the JobRepository of
// package app and the transactional outbox the relay drains, on SQLite (the
// embedded default) or PostgreSQL through libs/sqlstore.
//
// Every job change and the events it causes are written in one database
// transaction: the jobs row (with an optimistic-concurrency version) and one
// outbox row per event, holding the event's Avro bytes and message headers as
// the events codec produced them, its Kafka topic and key, and for
// job-lifecycle events the routing key on RabbitMQ's job.events exchange.
// Outbox rows of one job are numbered by a per-job sequence (seq) in the
// order they were written; libs/outbox keeps them (see its ClaimOutbox for
// how relays share them).
package store

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// MigrationComponent keeps the orchestrator's migration versions apart from
// other components sharing the database.
const MigrationComponent = "job-orchestrator"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the orchestrator's tables in db.
func Migrate(ctx context.Context, db *sqlstore.DB) error {
	if err := sqlstore.Migrate(ctx, db, migrations, "migrations", sqlstore.WithComponent(MigrationComponent)); err != nil {
		return fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
	}
	return nil
}

// Config configures a Store.
type Config struct {
	// AfterCommit, when set, is called after every committed transaction
	// that appended outbox rows, with the types of the events appended, on
	// the goroutine that committed. The service uses it to wake the relay
	// (and, as a test hook, to crash between commit and publish).
	AfterCommit func(eventTypes []string)
	// Now is the clock of outbox timestamps; nil means time.Now.
	Now func() time.Time
	// Registerer, when set, receives the store's metrics: how long each
	// write transaction of the group commit and each dispatch claim held
	// the database (see metrics.go).
	Registerer prometheus.Registerer
}

// Store implements app.JobRepository and the relay's outbox over a
// sqlstore.DB whose tables Migrate created.
type Store struct {
	// Store is the outbox in the orchestrator's tables: ClaimOutbox,
	// CompleteOutbox, ListParked, RetryParked, OutboxBacklog, PurgeOutbox.
	*outbox.Store
	db      *sqlstore.DB
	codec   *events.Codec
	cfg     Config
	pg      bool
	metrics *storeMetrics
	group   groupCommit
	// transitions queues the Transitions on PostgreSQL, apart from the
	// Creates (see transitionQueue).
	transitions groupCommit
}

var _ app.JobRepository = (*Store)(nil)

// New returns a Store on db, encoding outbox events with codec.
func New(db *sqlstore.DB, codec *events.Codec, cfg Config) (*Store, error) {
	if db == nil || codec == nil {
		return nil, errors.New("store: db and codec are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newStoreMetrics(cfg.Registerer, string(db.Dialect()))
	if err != nil {
		return nil, fmt.Errorf("store metrics: %w", err)
	}
	ob := outbox.NewStore(db, outbox.Options{Tables: outboxTables, Now: cfg.Now, WrapErr: dbErr})
	return &Store{Store: ob, db: db, codec: codec, cfg: cfg, pg: db.Dialect() == sqlstore.DialectPostgres, metrics: m}, nil
}

// writeTx runs fn in a write transaction of the group commit carrying
// creates new jobs and transitions transitions, and records how long the
// transaction held the database: from the start of its last attempt (BEGIN
// returned) until COMMIT or ROLLBACK returned.
func (s *Store) writeTx(ctx context.Context, creates, transitions int, fn func(*sql.Tx) error) error {
	var begun time.Time
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		begun = time.Now()
		return fn(tx)
	})
	if !begun.IsZero() {
		s.metrics.commit(time.Since(begun), creates, transitions)
	}
	return err
}

// Check reports whether the database answers, for readiness probes.
func (s *Store) Check(ctx context.Context) error { return s.db.Ping(ctx) }

// passthrough carries an error that must reach the caller unwrapped (the
// mutate callback's, or a sentinel of the contract) out of a transaction.
type passthrough struct{ err error }

func (p *passthrough) Error() string { return p.err.Error() }
func (p *passthrough) Unwrap() error { return p.err }

// dbErr turns an error of a repository call into the contract's shape: a
// passthrough error as it is, any other (driver, connection, context) error
// wrapping domain.ErrUnavailable.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var p *passthrough
	if errors.As(err, &p) {
		return p.err
	}
	return fmt.Errorf("%s: %w: %w", op, domain.ErrUnavailable, err)
}

func nanos(t time.Time) int64 { return t.UnixNano() }

func fromNanos(n int64) time.Time { return time.Unix(0, n).UTC() }

// encodeJob returns the JSON document of j; the version lives in its column
// (it is zero in the document). j is the store's own copy, not yet seen by
// another goroutine: its version is cleared while it is marshalled instead
// of marshalling a second copy.
func encodeJob(j *domain.Job) (string, error) {
	v := j.Version
	j.Version = 0
	b, err := json.Marshal(j)
	j.Version = v
	if err != nil {
		return "", fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return string(b), nil
}

func decodeJob(doc string, version int64) (*domain.Job, error) {
	var j domain.Job
	if err := json.Unmarshal([]byte(doc), &j); err != nil {
		return nil, fmt.Errorf("decode stored job: %w", err)
	}
	j.Version = version
	return &j, nil
}

// Create implements app.JobRepository. Concurrent Creates share one
// transaction (group commit, see groupCommit): Create returns once the
// transaction holding its job committed, or failed.
func (s *Store) Create(ctx context.Context, job *domain.Job, outbox []app.OutboxRecord) error {
	if job == nil || job.ID == "" {
		return errors.New("create job: job without id")
	}
	stored := job.Clone()
	stored.Version = 1
	doc, err := encodeJob(stored)
	if err != nil {
		return err
	}
	rows, err := s.outboxRows(ctx, stored, outbox)
	if err != nil {
		return err
	}
	req := &groupReq{ctx: ctx, done: make(chan error, 1), job: stored, doc: doc, rows: rows}
	s.group.enqueue(s, req)
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		// The job may still be stored: a retry with the same idempotency
		// key finds it.
		return dbErr("create job "+job.ID, ctx.Err())
	}
}

// createOne stores the job of req in a transaction of its own.
func (s *Store) createOne(req *groupReq) error {
	ctx, stored, rows := req.ctx, req.job, req.rows
	err := s.writeTx(ctx, 1, 0, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO jobs
			(id, owner, idempotency_key, status, tacc_system, created_at, updated_at, version, doc, resubmitted_from)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), jobArgs(stored, req.doc)...); err != nil {
			return err
		}
		if err := s.insertTags(ctx, tx, stored); err != nil {
			return err
		}
		return s.appendOutbox(ctx, tx, stored.ID, 0, rows)
	})
	if err != nil {
		if sqlstore.IsUniqueViolation(err) {
			if _, gerr := s.GetByIdempotencyKey(ctx, stored.Owner, stored.IdempotencyKey); gerr == nil {
				return fmt.Errorf("create job %s: %w", stored.ID, app.ErrDuplicateIdempotencyKey)
			}
			return fmt.Errorf("create job %s: job id or event id already stored: %w", stored.ID, err)
		}
		return dbErr("create job "+stored.ID, err)
	}
	s.committed(rows)
	return nil
}

func jobArgs(j *domain.Job, doc string) []any {
	return []any{j.ID, j.Owner, j.IdempotencyKey, string(j.Status), j.Spec.System,
		nanos(j.CreatedAt), nanos(j.UpdatedAt), j.Version, doc, nullable(j.ResubmittedFrom)}
}

// jobColumns are the columns scanJob reads: the doc, and the version and
// dispatch claim, which live in columns of their own.
const jobColumns = "doc, version, dispatch_token, dispatch_at, dispatch_uncertain"

func (s *Store) scanJob(row interface{ Scan(...any) error }) (*domain.Job, error) {
	var (
		doc           string
		version       int64
		token         sql.NullString
		at, uncertain sql.NullInt64
	)
	if err := row.Scan(&doc, &version, &token, &at, &uncertain); err != nil {
		return nil, err
	}
	j, err := decodeJob(doc, version)
	if err != nil {
		return nil, err
	}
	// The claim's columns are the truth: ClaimSubmitted writes them alone.
	j.Dispatch = domain.DispatchClaim{Token: token.String}
	if at.Valid {
		j.Dispatch.At = fromNanos(at.Int64)
	}
	if uncertain.Valid {
		j.Dispatch.Uncertain = fromNanos(uncertain.Int64)
	}
	return j, nil
}

// dispatchArgs are the column values of j's dispatch claim (token, at,
// uncertain), NULL where unset.
func dispatchArgs(j *domain.Job) []any {
	d := j.Dispatch
	args := []any{nullable(d.Token), nil, nil}
	if !d.At.IsZero() {
		args[1] = nanos(d.At)
	}
	if !d.Uncertain.IsZero() {
		args[2] = nanos(d.Uncertain)
	}
	return args
}

// Get implements app.JobRepository.
func (s *Store) Get(ctx context.Context, id string) (*domain.Job, error) {
	j, err := s.scanJob(s.db.QueryRowContext(ctx, s.db.Rebind("SELECT "+jobColumns+" FROM jobs WHERE id = ?"), id))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("job %s: %w", id, domain.ErrNotFound)
	case err != nil:
		return nil, dbErr("get job "+id, err)
	}
	return j, nil
}

// GetByIdempotencyKey implements app.JobRepository.
func (s *Store) GetByIdempotencyKey(ctx context.Context, owner, key string) (*domain.Job, error) {
	j, err := s.scanJob(s.db.QueryRowContext(ctx,
		s.db.Rebind("SELECT "+jobColumns+" FROM jobs WHERE owner = ? AND idempotency_key = ?"), owner, key))
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, fmt.Errorf("job of %s with idempotency key %q: %w", owner, key, domain.ErrNotFound)
	case err != nil:
		return nil, dbErr("get job by idempotency key", err)
	}
	return j, nil
}

// List implements app.JobRepository.
func (s *Store) List(ctx context.Context, q app.ListQuery) ([]*domain.Job, error) {
	if q.Limit <= 0 {
		return nil, errors.New("list jobs: limit must be positive")
	}
	var (
		where []string
		args  []any
	)
	if q.Owner != "" {
		where = append(where, "owner = ?")
		args = append(args, q.Owner)
	}
	if len(q.Statuses) > 0 {
		where = append(where, "status IN ("+placeholders(len(q.Statuses))+")")
		for _, st := range q.Statuses {
			args = append(args, string(st))
		}
	}
	if q.System != "" {
		where = append(where, "tacc_system = ?")
		args = append(args, q.System)
	}
	if !q.CreatedAfter.IsZero() {
		where = append(where, "created_at >= ?")
		args = append(args, nanos(q.CreatedAfter))
	}
	if !q.CreatedBefore.IsZero() {
		where = append(where, "created_at < ?")
		args = append(args, nanos(q.CreatedBefore))
	}
	if len(q.Tags) > 0 {
		w, a := tagConditions(q.Tags)
		where, args = append(where, w...), append(args, a...)
	}
	if q.After != nil {
		c := nanos(q.After.CreatedAt)
		where = append(where, "(created_at < ? OR (created_at = ? AND id < ?))")
		args = append(args, c, c, q.After.ID)
	}
	query := "SELECT " + jobColumns + " FROM jobs"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, q.Limit)
	return s.queryJobs(ctx, "list jobs", query, args...)
}

// ListActive implements app.JobRepository.
func (s *Store) ListActive(ctx context.Context, limit int, statuses ...domain.Status) ([]*domain.Job, error) {
	query, args, err := s.activeQuery(jobColumns, limit, statuses)
	if err != nil {
		return nil, err
	}
	return s.queryJobs(ctx, "list active jobs", query, args...)
}

// ListActiveVersions implements app.JobRepository: ListActive's query
// without the documents.
func (s *Store) ListActiveVersions(ctx context.Context, limit int, statuses ...domain.Status) ([]app.JobVersion, error) {
	query, args, err := s.activeQuery("id, version", limit, statuses)
	if err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, dbErr("list active job versions", err)
	}
	defer rows.Close()
	var out []app.JobVersion
	for rows.Next() {
		var v app.JobVersion
		if err := rows.Scan(&v.ID, &v.Version); err != nil {
			return nil, dbErr("list active job versions", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr("list active job versions", err)
	}
	return out, nil
}

// getManyChunk bounds the ids of one GetMany query.
const getManyChunk = 500

// GetMany implements app.JobRepository.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*domain.Job, error) {
	var out []*domain.Job
	for lo := 0; lo < len(ids); lo += getManyChunk {
		chunk := ids[lo:min(lo+getManyChunk, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		jobs, err := s.queryJobs(ctx, "get jobs", "SELECT "+jobColumns+" FROM jobs WHERE id IN ("+placeholders(len(chunk))+")", args...)
		if err != nil {
			return nil, err
		}
		out = append(out, jobs...)
	}
	return out, nil
}

// activeQuery is ListActive's query of cols: the limit oldest jobs (by
// UpdatedAt, then id) of the given active statuses, or of all of them.
func (s *Store) activeQuery(cols string, limit int, statuses []domain.Status) (string, []any, error) {
	if limit <= 0 {
		return "", nil, errors.New("list active jobs: limit must be positive")
	}
	if len(statuses) == 0 {
		statuses = slices.DeleteFunc(domain.Statuses(), func(st domain.Status) bool { return !st.Active() })
	}
	statuses = slices.Compact(slices.Sorted(slices.Values(statuses)))
	// Each status is a range of the partial index jobs_active_by_status,
	// read in order up to the limit; the ranges are merged.
	var (
		branches []string
		args     []any
	)
	for i, st := range statuses {
		if !st.Active() {
			return "", nil, fmt.Errorf("list active jobs: %q is not an active status", st)
		}
		branches = append(branches, fmt.Sprintf("SELECT * FROM (SELECT %s, updated_at AS active_at, id AS active_id FROM jobs"+
			" WHERE %s ORDER BY updated_at, id LIMIT ?) AS s%d", cols, s.activeStatusIs(), i))
		args = append(args, string(st), limit)
	}
	query := "SELECT " + cols + " FROM (" + strings.Join(branches, " UNION ALL ") + ") AS active" +
		" ORDER BY active_at, active_id LIMIT ?"
	return query, append(args, limit), nil
}

// activeStatusIs is the condition "status = ?", for an active status,
// written so that the partial index jobs_active_by_status applies. SQLite
// uses a partial index only when the query repeats the index's condition,
// so there the condition starts with it. PostgreSQL proves the index's
// condition from the equality, and the repeated term would only spoil its
// row estimate: with it, it read every QUEUED job through
// jobs_by_status_created and sorted them.
func (s *Store) activeStatusIs() string {
	if s.pg {
		return "status = ?"
	}
	var active []string
	for _, st := range domain.Statuses() {
		if st.Active() {
			active = append(active, "'"+string(st)+"'")
		}
	}
	return "status IN (" + strings.Join(active, ", ") + ") AND status = ?"
}

func (s *Store) queryJobs(ctx context.Context, op, query string, args ...any) ([]*domain.Job, error) {
	return s.queryJobsOn(ctx, s.db.Reader(), op, query, args...)
}

// queryer is a pool or one connection of it.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryJobsOn runs query on pool (the reader, or a writer connection for an
// UPDATE ... RETURNING) and decodes the jobs it returns.
func (s *Store) queryJobsOn(ctx context.Context, pool queryer, op, query string, args ...any) ([]*domain.Job, error) {
	rows, err := pool.QueryContext(ctx, s.db.Rebind(query), args...)
	if err != nil {
		return nil, dbErr(op, err)
	}
	defer rows.Close()
	var out []*domain.Job
	for rows.Next() {
		j, err := s.scanJob(rows)
		if err != nil {
			return nil, dbErr(op, err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(op, err)
	}
	return out, nil
}

// transitionQueue is the group commit queue of Transitions. On SQLite,
// which has one writer, it is the Creates' queue: one transaction serves
// both. On PostgreSQL it is a queue of its own: a transition in a batch
// costs four round trips in turn (row lock, last outbox sequence, update,
// outbox insert) where a whole batch of new jobs costs about four, so
// Creates sharing a batch with a hundred transitions waited for hundreds
// of round trips; apart, their batches commit in parallel with the
// reconciler's.
func (s *Store) transitionQueue() *groupCommit {
	if s.pg {
		return &s.transitions
	}
	return &s.group
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// Transition implements app.JobRepository. Concurrent Transitions share
// transactions (group commit, see groupCommit), with the Creates on SQLite.
func (s *Store) Transition(ctx context.Context, id string, expectedVersion int64, mutate func(*domain.Job) ([]app.OutboxRecord, error)) (*domain.Job, error) {
	req := &groupReq{ctx: ctx, done: make(chan error, 1),
		tr: &transitionReq{id: id, expected: expectedVersion, mutate: mutate}}
	s.transitionQueue().enqueue(s, req)
	select {
	case err := <-req.done:
		if err != nil {
			return nil, err
		}
		return req.tr.stored.Clone(), nil
	case <-ctx.Done():
		// The transition may still be written; its version tells.
		return nil, dbErr("transition job "+id, ctx.Err())
	}
}

// transitionOne writes the transition of req in a transaction of its own.
func (s *Store) transitionOne(req *groupReq) error {
	t := req.tr
	var (
		stored *domain.Job
		rows   []outbox.Row
	)
	err := s.writeTx(req.ctx, 0, 1, func(tx *sql.Tx) error {
		var err error
		stored, rows, err = s.transitionInTx(req.ctx, req.ctx, tx, t)
		return err
	})
	if err != nil {
		return dbErr("transition job "+t.id, err)
	}
	s.committed(rows)
	t.stored = stored
	return nil
}

// transitionInTx applies t in tx (statements under ctx; opCtx is the
// caller's, whose trace the outbox rows carry). A *passthrough error means
// t was refused and wrote nothing; any other error fails tx.
func (s *Store) transitionInTx(ctx, opCtx context.Context, tx *sql.Tx, t *transitionReq) (*domain.Job, []outbox.Row, error) {
	id := t.id
	cur, err := s.lockJob(ctx, tx, id)
	switch {
	case err != nil:
		return nil, nil, err
	case t.expected != app.AnyVersion && t.expected != cur.Version:
		return nil, nil, &passthrough{fmt.Errorf("job %s at version %d, expected %d: %w", id, cur.Version, t.expected, app.ErrVersionConflict)}
	}
	next := cur.Clone()
	out, err := t.mutate(next)
	if err != nil {
		return nil, nil, &passthrough{err}
	}
	next.Version = cur.Version + 1
	doc, err := encodeJob(next)
	if err != nil {
		return nil, nil, &passthrough{err}
	}
	rows, err := s.outboxRows(opCtx, next, out)
	if err != nil {
		return nil, nil, &passthrough{err}
	}
	args := append([]any{string(next.Status), next.Spec.System, nanos(next.UpdatedAt), next.Version, doc},
		dispatchArgs(next)...)
	res, err := tx.ExecContext(ctx, s.db.Rebind(`UPDATE jobs SET status = ?, tacc_system = ?, updated_at = ?, version = ?, doc = ?,
		dispatch_token = ?, dispatch_at = ?, dispatch_uncertain = ?
		WHERE id = ? AND version = ?`), append(args, id, cur.Version)...)
	if err != nil {
		return nil, nil, err
	}
	if n, err := res.RowsAffected(); err != nil {
		return nil, nil, err
	} else if n != 1 {
		// Only possible without a row lock; kept as a guard.
		return nil, nil, &passthrough{fmt.Errorf("job %s changed during the transaction: %w", id, app.ErrVersionConflict)}
	}
	if err := s.appendAfterLast(ctx, tx, id, rows); err != nil {
		return nil, nil, err
	}
	return next, rows, nil
}

// AppendOutbox implements app.JobRepository: the job row is locked (read
// FOR UPDATE on PostgreSQL; SQLite's single writer) but not written.
func (s *Store) AppendOutbox(ctx context.Context, id string, out []app.OutboxRecord) error {
	var rows []outbox.Row
	err := s.db.InTx(ctx, func(tx *sql.Tx) error {
		cur, err := s.lockJob(ctx, tx, id)
		if err != nil {
			return err
		}
		if rows, err = s.outboxRows(ctx, cur, out); err != nil {
			return &passthrough{err}
		}
		return s.appendAfterLast(ctx, tx, id, rows)
	})
	if err != nil {
		return dbErr("append to the outbox of job "+id, err)
	}
	s.committed(rows)
	return nil
}

// lockJob reads job id in tx with a write lock (FOR UPDATE on PostgreSQL;
// SQLite has a single writer), so that its row and outbox sequence cannot
// change until tx ends.
func (s *Store) lockJob(ctx context.Context, tx *sql.Tx, id string) (*domain.Job, error) {
	lock := ""
	if s.pg {
		lock = " FOR UPDATE"
	}
	j, err := s.scanJob(tx.QueryRowContext(ctx, s.db.Rebind("SELECT "+jobColumns+" FROM jobs WHERE id = ?"+lock), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, &passthrough{fmt.Errorf("job %s: %w", id, domain.ErrNotFound)}
	}
	return j, err
}

// appendAfterLast appends rows to job id's outbox after its last record;
// the job must be locked in tx (lockJob).
func (s *Store) appendAfterLast(ctx context.Context, tx *sql.Tx, id string, rows []outbox.Row) error {
	if len(rows) == 0 {
		return nil
	}
	var last int64
	if err := tx.QueryRowContext(ctx, s.db.Rebind("SELECT COALESCE(MAX(seq), 0) FROM outbox WHERE job_id = ?"), id).Scan(&last); err != nil {
		return err
	}
	return s.appendOutbox(ctx, tx, id, last, rows)
}

func (s *Store) committed(rows []outbox.Row) {
	if s.cfg.AfterCommit == nil || len(rows) == 0 {
		return
	}
	types := make([]string, len(rows))
	for i, r := range rows {
		types[i] = r.EventType
	}
	s.cfg.AfterCommit(types)
}
