package app

import (
	"context"
	"errors"
	"time"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// OutboxRecord is one event to publish, written in the same transaction as
// the job change that caused it. The relay publishes records of one job in
// the order they were written (job-lifecycle key = job id, per-job
// sequence in the envelope) and marks them sent.
type OutboxRecord struct {
	Event events.Event
}

// Errors a JobRepository returns; wrap them with %w.
var (
	// ErrVersionConflict: Transition's expectedVersion is not the stored
	// version. Nothing was written.
	ErrVersionConflict = errors.New("job version conflict")
	// ErrDuplicateIdempotencyKey: Create found a job of the same owner with
	// the same idempotency key. Nothing was written.
	ErrDuplicateIdempotencyKey = errors.New("duplicate idempotency key")
)

// AnyVersion passed as expectedVersion to Transition skips the version
// check; mutate still runs on the latest stored job under the transaction's
// lock, so checks inside mutate are race free.
const AnyVersion int64 = 0

// ListQuery selects jobs for ListJobs. Empty fields match everything.
type ListQuery struct {
	// Owner keeps the jobs of one user; "" means every user (admins).
	Owner    string
	Statuses []domain.Status
	System   string
	// Tags keeps the jobs that carry every one of these tags.
	Tags []string
	// CreatedAfter keeps jobs created at or after it; CreatedBefore keeps
	// jobs created strictly before it.
	CreatedAfter, CreatedBefore time.Time
	// After continues a listing: only jobs strictly after this cursor in the
	// order (CreatedAt DESC, ID DESC).
	After *Cursor
	// Limit is the largest number of jobs returned; always > 0.
	Limit int
}

// Cursor is a position in the listing order (CreatedAt DESC, ID DESC).
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// JobVersion names a stored job at a version: a job whose Version did not
// change is the job read before.
type JobVersion struct {
	ID      string
	Version int64
}

// JobRepository stores jobs and their outbox. Every adapter (SQLite,
// PostgreSQL) must pass the same contract suite. The contract:
//
//   - Create stores a new job with Version 1 together with its outbox
//     records, in one transaction. The pair (Owner, IdempotencyKey) is
//     unique for as long as the job is stored: a second Create with the
//     same pair writes nothing and returns an error wrapping
//     ErrDuplicateIdempotencyKey (two concurrent Creates: exactly one
//     succeeds). Job IDs are unique.
//   - Get and GetByIdempotencyKey return a deep copy including History and
//     Version, or an error wrapping domain.ErrNotFound.
//   - List returns at most q.Limit jobs matching q, ordered by CreatedAt
//     descending then ID descending, starting strictly after q.After.
//   - ListActive returns up to limit jobs whose status is one of statuses,
//     or not terminal when none is given, oldest UpdatedAt first (the
//     reconciler's work lists).
//   - ListActiveVersions returns the id and Version of the jobs ListActive
//     would return, in the same order, without reading their documents.
//   - GetMany returns the jobs of ids that are stored, as Get would, in no
//     particular order; unknown ids are left out.
//   - ClaimSubmitted claims up to limit SUBMITTED jobs for dispatch by the
//     replica named token, in one statement, oldest UpdatedAt first: jobs
//     whose Dispatch.Token is empty, or whose claim started at least lease
//     before now (its replica is taken to be dead). Each claimed job gets
//     Dispatch{Token: token, At: now} and Version+1, its other fields
//     unchanged (UpdatedAt too); a claim taken over sets Dispatch.Uncertain
//     to the taken-over claim's At unless it was set already. It returns
//     the claimed jobs as stored, oldest first. Concurrent calls never
//     return the same job, unless its lease ended between them.
//   - Transition reads the job with a write lock (SELECT ... FOR UPDATE on
//     PostgreSQL; SQLite's single writer), fails with ErrVersionConflict
//     when expectedVersion != AnyVersion and differs from the stored
//     Version, calls mutate on a copy, and, if mutate returns no error,
//     stores the mutated job with Version+1 and appends the returned outbox
//     records in the order given, all in one transaction. It returns the
//     stored job. If mutate returns an error nothing is written and that
//     error is returned so that errors.Is still matches it. New entries
//     in the job's History (by Sequence) are stored with it.
//   - AppendOutbox appends records to the outbox of an existing job after
//     its earlier ones, under the same write lock as Transition, without
//     changing the job (neither its row nor its Version): for events about
//     a job that are not changes of it, such as a refused command. It
//     returns an error wrapping domain.ErrNotFound for an unknown job.
//   - Every error caused by the database being unreachable wraps
//     domain.ErrUnavailable.
type JobRepository interface {
	Create(ctx context.Context, job *domain.Job, outbox []OutboxRecord) error
	Get(ctx context.Context, id string) (*domain.Job, error)
	GetByIdempotencyKey(ctx context.Context, owner, key string) (*domain.Job, error)
	List(ctx context.Context, q ListQuery) ([]*domain.Job, error)
	ListActive(ctx context.Context, limit int, statuses ...domain.Status) ([]*domain.Job, error)
	ListActiveVersions(ctx context.Context, limit int, statuses ...domain.Status) ([]JobVersion, error)
	GetMany(ctx context.Context, ids []string) ([]*domain.Job, error)
	ClaimSubmitted(ctx context.Context, token string, now time.Time, lease time.Duration, limit int) ([]*domain.Job, error)
	Transition(ctx context.Context, id string, expectedVersion int64, mutate func(*domain.Job) ([]OutboxRecord, error)) (*domain.Job, error)
	AppendOutbox(ctx context.Context, id string, outbox []OutboxRecord) error
}
