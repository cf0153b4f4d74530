// Package adapters holds the metrics-consumer's store: the job records of
// internal/domain over libs/sqlstore (SQLite or PostgreSQL), written inside
// the transactional inbox's transaction.
package adapters

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
)

// MigrationComponent is the component the store's tables are migrated as.
const MigrationComponent = "metrics-consumer"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrate creates or upgrades the store's tables in db.
func Migrate(ctx context.Context, db *sqlstore.DB) error {
	return sqlstore.Migrate(ctx, db, migrations, "migrations", sqlstore.WithComponent(MigrationComponent))
}

// columns of metrics_jobs in the order of scanJob and jobArgs.
var columns = []string{
	"job_id", "user_id", "tacc_system", "agent", "allocation", "identity_rank", "nodes", "gpus_per_node",
	"created_at_us", "submitted_at_us", "started_at_us", "ended_at_us",
	"status", "status_seq", "status_event_id",
	"terminal_seq", "terminal_event_id", "terminal_run_ms", "terminal_queue_wait_ms",
	"sample_present", "sample_seq", "sample_at_us", "sample_event_id", "sample_queue_wait_ms", "sample_run_time_ms",
	"sample_exit_code", "sample_node_hours", "sample_gpu_hours", "sample_cpu_time_ms", "sample_max_rss_bytes", "sample_final",
	"queue_wait_ms", "run_time_ms", "node_hours", "gpu_hours",
}

// JobRepository reads and writes job records.
type JobRepository struct {
	db *sqlstore.DB
	q  struct {
		get, insertBlank, upsert, upsertFull, all, reset, ended string
	}
}

// NewJobRepository returns the repository over db, migrated with Migrate.
func NewJobRepository(db *sqlstore.DB) *JobRepository {
	r := &JobRepository{db: db}
	cols := strings.Join(columns, ", ")
	get := "SELECT " + cols + " FROM metrics_jobs WHERE job_id = ?"
	if db.Dialect() == sqlstore.DialectPostgres {
		// Lifecycle and metrics partitions of one job are applied by
		// concurrent transactions: serialize them on the row.
		get += " FOR UPDATE"
	}
	sets := make([]string, 0, len(columns)-1)
	for _, c := range columns[1:] {
		sets = append(sets, c+" = excluded."+c)
	}
	r.q.get = db.Rebind(get)
	r.q.insertBlank = db.Rebind("INSERT INTO metrics_jobs (job_id) VALUES (?) ON CONFLICT (job_id) DO NOTHING")
	r.q.upsert = db.Rebind("INSERT INTO metrics_jobs (" + cols + ") VALUES (" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") +
		") ON CONFLICT (job_id) DO UPDATE SET " + strings.Join(sets, ", "))
	r.q.upsertFull = r.upsertRows(upsertChunk)
	r.q.all = "SELECT " + cols + " FROM metrics_jobs ORDER BY job_id"
	r.q.reset = "DELETE FROM metrics_jobs"
	r.q.ended = db.Rebind("SELECT ended_at_us FROM metrics_jobs WHERE ended_at_us >= ? AND status = 'COMPLETED'")
	return r
}

// Session applies events inside inbox transactions. It keeps the records
// it read or wrote in the current transaction, so a batch touching a job
// several times reads it once; a new transaction (such as the retry of a
// rolled-back one) starts with an empty cache. A Session is not safe for
// concurrent use: use one per batch or per message.
//
// A deferring session (the one Bind returns) applies events to the cached
// records only and writes each changed record once, in Flush at the end of
// the transaction, with multi-row upserts: a batch with many events of one
// job writes its row once, and the stored rows are the same as if each
// event had been written on its own (records merge commutatively).
type Session struct {
	r           *JobRepository
	tx          *sql.Tx
	jobs        map[string]*domain.Job
	stmts       map[string]*sql.Stmt
	prefetch    []string
	deferWrites bool
	dirty       map[string]bool
}

// NewSession starts a session. On SQLite, the records of prefetch (job ids,
// such as the keys of a batch's messages) are read with one query when the
// session first sees a transaction, instead of one query per job.
func (r *JobRepository) NewSession(prefetch ...string) *Session {
	if r.db.Dialect() != sqlstore.DialectSQLite {
		prefetch = nil
	}
	return &Session{r: r, prefetch: prefetch}
}

// TxSession is a Session bound to one inbox transaction: the job writes of
// the events that transaction applies.
type TxSession struct {
	s  *Session
	tx *sql.Tx
}

// Bind returns a new session bound to tx; the inbox's unit of work binds
// each of its transactions with it. A transaction applying several messages
// (a batch) reads their jobs (the messages' keys) ahead on SQLite.
func (r *JobRepository) Bind(tx *sql.Tx, msgs []*bus.Message) *TxSession {
	var keys []string
	if len(msgs) > 1 {
		keys = make([]string, len(msgs))
		for i, m := range msgs {
			keys[i] = m.Key // the job id on both topics
		}
	}
	s := r.NewSession(keys...)
	s.deferWrites = true
	return &TxSession{s: s, tx: tx}
}

// Apply merges ev into its job's record within the bound transaction; the
// record is written by Flush.
func (t *TxSession) Apply(ctx context.Context, ev events.Event) error {
	return t.s.Apply(ctx, t.tx, ev)
}

// Flush writes every record the bound transaction changed, once each; the
// inbox's unit of work calls it before the transaction commits.
func (t *TxSession) Flush(ctx context.Context) error {
	return t.s.Flush(ctx)
}

// prefetchChunk bounds the ids of one prefetch query.
const prefetchChunk = 500

func (s *Session) bind(ctx context.Context, tx *sql.Tx) error {
	if s.tx == tx {
		return nil
	}
	s.tx, s.jobs, s.stmts, s.dirty = tx, make(map[string]*domain.Job), make(map[string]*sql.Stmt), make(map[string]bool)
	ids := make([]string, 0, len(s.prefetch))
	seen := make(map[string]bool, len(s.prefetch))
	for _, id := range s.prefetch {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for len(ids) > 0 {
		chunk := ids[:min(prefetchChunk, len(ids))]
		ids = ids[len(chunk):]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
			s.jobs[id] = domain.NewJob(id)
		}
		q := "SELECT " + strings.Join(columns, ", ") + " FROM metrics_jobs WHERE job_id IN (" +
			strings.TrimSuffix(strings.Repeat("?, ", len(chunk)), ", ") + ")"
		rows, err := tx.QueryContext(ctx, s.r.db.Rebind(q), args...)
		if err != nil {
			return fmt.Errorf("prefetch jobs: %w", err)
		}
		for rows.Next() {
			j, err := scanJob(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("prefetch jobs: %w", err)
			}
			s.jobs[j.ID] = j
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("prefetch jobs: %w", err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("prefetch jobs: %w", err)
		}
	}
	return nil
}

func (s *Session) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := s.stmts[query]; ok {
		return st, nil
	}
	st, err := s.tx.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	s.stmts[query] = st
	return st, nil
}

// Apply merges ev into its job's record within tx. Events that are not
// about a job are ignored.
func (s *Session) Apply(ctx context.Context, tx *sql.Tx, ev events.Event) error {
	id := domain.JobID(ev)
	if id == "" {
		return nil
	}
	if err := s.bind(ctx, tx); err != nil {
		return err
	}
	j, err := s.load(ctx, id)
	if err != nil {
		return err
	}
	if !j.Apply(ev) {
		return nil
	}
	if s.deferWrites {
		s.dirty[id] = true
		return nil
	}
	up, err := s.stmt(ctx, s.r.q.upsert)
	if err != nil {
		return err
	}
	if _, err := up.ExecContext(ctx, jobArgs(j)...); err != nil {
		return fmt.Errorf("store job %s: %w", id, err)
	}
	return nil
}

// upsertChunk bounds the rows of one multi-row upsert (35 parameters each,
// well below SQLite's and PostgreSQL's parameter limits).
const upsertChunk = 100

// Flush writes the records changed since the last Flush in the session's
// current transaction, in job id order, upsertChunk rows per statement. A
// session that does not defer writes has nothing to flush.
func (s *Session) Flush(ctx context.Context) error {
	if len(s.dirty) == 0 {
		return nil
	}
	ids := make([]string, 0, len(s.dirty))
	for id := range s.dirty {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	args := make([]any, 0, min(len(ids), upsertChunk)*len(columns))
	for len(ids) > 0 {
		chunk := ids[:min(upsertChunk, len(ids))]
		ids = ids[len(chunk):]
		args = args[:0]
		for _, id := range chunk {
			args = append(args, jobArgs(s.jobs[id])...)
		}
		st, err := s.stmt(ctx, s.r.upsertRows(len(chunk)))
		if err != nil {
			return err
		}
		if _, err := st.ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("store %d jobs from %s: %w", len(chunk), chunk[0], err)
		}
	}
	clear(s.dirty)
	return nil
}

// upsertRows is the upsert of n records in one statement.
func (r *JobRepository) upsertRows(n int) string {
	switch {
	case n == 1 && r.q.upsert != "":
		return r.q.upsert
	case n == upsertChunk && r.q.upsertFull != "":
		return r.q.upsertFull
	}
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(columns)), ", ") + ")"
	sets := make([]string, 0, len(columns)-1)
	for _, c := range columns[1:] {
		sets = append(sets, c+" = excluded."+c)
	}
	return r.db.Rebind("INSERT INTO metrics_jobs (" + strings.Join(columns, ", ") + ") VALUES " +
		strings.TrimSuffix(strings.Repeat(row+", ", n), ", ") + " ON CONFLICT (job_id) DO UPDATE SET " + strings.Join(sets, ", "))
}

func (s *Session) load(ctx context.Context, id string) (*domain.Job, error) {
	if j, ok := s.jobs[id]; ok {
		return j, nil
	}
	if s.r.db.Dialect() == sqlstore.DialectPostgres {
		ins, err := s.stmt(ctx, s.r.q.insertBlank)
		if err != nil {
			return nil, err
		}
		if _, err := ins.ExecContext(ctx, id); err != nil {
			return nil, fmt.Errorf("lock job %s: %w", id, err)
		}
	}
	get, err := s.stmt(ctx, s.r.q.get)
	if err != nil {
		return nil, err
	}
	j, err := scanJob(get.QueryRowContext(ctx, id))
	switch {
	case err == sql.ErrNoRows:
		j = domain.NewJob(id)
	case err != nil:
		return nil, fmt.Errorf("load job %s: %w", id, err)
	}
	s.jobs[id] = j
	return j, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanJob(row scanner) (*domain.Job, error) {
	var (
		j                   domain.Job
		status              string
		present, final      int64
		sm                  domain.Sample
		exit                sql.NullInt32
		cpu, rss            sql.NullInt64
		qw, run             int64
		nodeHours, gpuHours float64
		identityRank        int64
	)
	err := row.Scan(&j.ID, &j.UserID, &j.System, &j.Agent, &j.Allocation, &identityRank, &j.Nodes, &j.GPUsPerNode,
		&j.CreatedAtUS, &j.SubmittedAtUS, &j.StartedAtUS, &j.EndedAtUS,
		&status, &j.StatusSeq, &j.StatusEventID,
		&j.TerminalSeq, &j.TerminalEventID, &j.TerminalRunMS, &j.TerminalQueueWaitMS,
		&present, &sm.Seq, &sm.AtUS, &sm.EventID, &sm.QueueWaitMS, &sm.RunTimeMS,
		&exit, &sm.NodeHours, &sm.GPUHours, &cpu, &rss, &final,
		&qw, &run, &nodeHours, &gpuHours)
	if err != nil {
		return nil, err
	}
	j.IdentityRank = int(identityRank)
	j.Status = events.JobStatus(status)
	if present != 0 {
		sm.Final = final != 0
		if exit.Valid {
			sm.ExitCode = &exit.Int32
		}
		if cpu.Valid {
			sm.CPUTimeMS = &cpu.Int64
		}
		if rss.Valid {
			sm.MaxRSSBytes = &rss.Int64
		}
		j.Sample = &sm
	}
	return &j, nil
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func jobArgs(j *domain.Job) []any {
	f := domain.FactsOf(j)
	var (
		present, final int64
		sm             domain.Sample
		exit, cpu, rss any
	)
	if j.Sample != nil {
		present, final, sm = 1, boolInt(j.Sample.Final), *j.Sample
		if sm.ExitCode != nil {
			exit = int64(*sm.ExitCode)
		}
		if sm.CPUTimeMS != nil {
			cpu = *sm.CPUTimeMS
		}
		if sm.MaxRSSBytes != nil {
			rss = *sm.MaxRSSBytes
		}
	}
	return []any{
		j.ID, j.UserID, j.System, j.Agent, j.Allocation, int64(j.IdentityRank), j.Nodes, j.GPUsPerNode,
		j.CreatedAtUS, j.SubmittedAtUS, j.StartedAtUS, j.EndedAtUS,
		string(j.Status), j.StatusSeq, j.StatusEventID,
		j.TerminalSeq, j.TerminalEventID, j.TerminalRunMS, j.TerminalQueueWaitMS,
		present, sm.Seq, sm.AtUS, sm.EventID, sm.QueueWaitMS, sm.RunTimeMS,
		exit, sm.NodeHours, sm.GPUHours, cpu, rss, final,
		f.QueueWaitMS, f.RunTimeMS, f.NodeHours, f.GPUHours,
	}
}

// Jobs returns every job record, ordered by job id: the whole state, for
// comparisons and exports.
func (r *JobRepository) Jobs(ctx context.Context) ([]*domain.Job, error) {
	rows, err := r.db.QueryContext(ctx, r.q.all)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []*domain.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		out = append(out, j)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return out, nil
}

// ResetTx deletes every job record inside tx.
func (r *JobRepository) ResetTx(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, r.q.reset); err != nil {
		return fmt.Errorf("reset jobs: %w", err)
	}
	return nil
}

// Each calls fn for every job matching f.
func (r *JobRepository) Each(ctx context.Context, f domain.Filter, fn func(domain.Row) error) error {
	var where []string
	var args []any
	add := func(cond string, v any) {
		where = append(where, cond)
		args = append(args, v)
	}
	if f.FromUS != 0 {
		add("created_at_us >= ?", f.FromUS)
	}
	if f.ToUS != 0 {
		add("created_at_us < ?", f.ToUS)
	}
	if f.JobID != "" {
		add("job_id = ?", f.JobID)
	}
	if f.UserID != "" {
		add("user_id = ?", f.UserID)
	}
	if f.System != "" {
		add("tacc_system = ?", f.System)
	}
	if f.Agent != "" {
		add("agent = ?", f.Agent)
	}
	q := "SELECT job_id, user_id, tacc_system, agent, allocation, created_at_us, status, queue_wait_ms, run_time_ms, node_hours, gpu_hours FROM metrics_jobs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	rows, err := r.db.QueryContext(ctx, r.db.Rebind(q), args...)
	if err != nil {
		return fmt.Errorf("query jobs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var row domain.Row
		var status string
		if err := rows.Scan(&row.JobID, &row.UserID, &row.System, &row.Agent, &row.Allocation, &row.CreatedAtUS,
			&status, &row.QueueWaitMS, &row.RunTimeMS, &row.NodeHours, &row.GPUHours); err != nil {
			return fmt.Errorf("query jobs: %w", err)
		}
		row.Status = events.JobStatus(status)
		if err := fn(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("query jobs: %w", err)
	}
	return nil
}

// CompletedSince returns the completion times (Unix microseconds) of jobs
// that completed at or after sinceUS.
func (r *JobRepository) CompletedSince(ctx context.Context, sinceUS int64) ([]int64, error) {
	rows, err := r.db.QueryContext(ctx, r.q.ended, sinceUS)
	if err != nil {
		return nil, fmt.Errorf("query completions: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var at int64
		if err := rows.Scan(&at); err != nil {
			return nil, fmt.Errorf("query completions: %w", err)
		}
		out = append(out, at)
	}
	return out, rows.Err()
}
