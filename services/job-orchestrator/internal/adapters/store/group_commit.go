package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// Group commit of Create and Transition: concurrent writes share one
// transaction, so one commit (one WAL write on SQLite, one fsync and a
// handful of round trips on PostgreSQL) serves many jobs instead of one.
//
// A Create or Transition queues its request and waits. A committer
// goroutine, started by a request that finds fewer than committers()
// running and ending when the queue is empty, takes up to maxGroupCommit
// queued requests at a time and writes them in one transaction: the new
// jobs with one multi-row INSERT ... ON CONFLICT (owner, idempotency_key)
// DO NOTHING RETURNING id and their outbox rows, then each transition as
// Transition alone would (row lock, version check, mutate, update, outbox).
// A request is answered only after that transaction committed (or failed):
// a call that returned without error is committed. While one batch is
// written the next one gathers, so batches grow with the load and a lone
// request waits for no timer; a batch is bounded, so no transaction holds
// the database for long.
//
// Idempotency keys: a job whose (owner, key) is already stored is not
// inserted, and its request gets ErrDuplicateIdempotencyKey. Two Creates of
// one batch with the same (owner, key) or job id are not written together:
// the later one is written after the batch, alone, and so finds the first.
// Transitions of one job in one batch apply in queue order, each seeing the
// one before.
//
// Failure isolation: a transition refused for its own reason (version
// conflict, unknown job, mutate's error) writes nothing and fails alone
// inside the batch. When the batch transaction itself fails (a job id or
// event id already stored, a value the database refuses), nothing of it is
// kept and each of its requests is written again in a transaction of its
// own, so only the bad request fails.
const (
	maxGroupCommit = 128
	// groupCommitTimeout bounds one batch transaction; the requests' own
	// contexts are not used for it, since one caller's cancellation must
	// not fail the others.
	groupCommitTimeout = 30 * time.Second
	// Rows per multi-row INSERT, within every dialect's bound on parameters.
	// (libs/outbox batches the outbox rows likewise.)
	jobsPerInsert = 100
)

// groupReq is one queued Create (job set) or Transition (tr set).
type groupReq struct {
	ctx  context.Context
	done chan error // buffered: the committer never blocks on it

	// Create: the job as stored (Version 1), its document and outbox rows.
	job  *domain.Job
	doc  string
	rows []outbox.Row

	tr *transitionReq
}

// transitionReq is a queued Transition; stored is its result.
type transitionReq struct {
	id       string
	expected int64
	mutate   func(*domain.Job) ([]app.OutboxRecord, error)
	stored   *domain.Job
}

// groupCommit is the queue of Creates waiting for a committer.
type groupCommit struct {
	mu      sync.Mutex
	pending []*groupReq
	running int
}

// committers bounds the batches written at once: one on SQLite, which has
// one writer; a few on PostgreSQL, whose pool writes in parallel, so that a
// batch's round trips overlap with the next one's.
func (s *Store) committers() int {
	if s.pg {
		return 4
	}
	return 1
}

func (g *groupCommit) enqueue(s *Store, r *groupReq) {
	g.mu.Lock()
	g.pending = append(g.pending, r)
	start := g.running < s.committers()
	if start {
		g.running++
	}
	g.mu.Unlock()
	if start {
		go g.commitLoop(s)
	}
}

// commitLoop writes batches until the queue is empty, then ends.
func (g *groupCommit) commitLoop(s *Store) {
	for {
		g.mu.Lock()
		n := min(len(g.pending), maxGroupCommit)
		if n == 0 {
			g.running--
			if g.running == 0 {
				g.pending = nil
			}
			g.mu.Unlock()
			return
		}
		batch := make([]*groupReq, n)
		copy(batch, g.pending)
		g.pending = g.pending[n:]
		g.mu.Unlock()
		s.commitBatch(batch)
	}
}

// commitBatch writes batch in one transaction and answers every request.
func (s *Store) commitBatch(batch []*groupReq) {
	type ownerKey struct{ owner, key string }
	var (
		creates, transitions, alone []*groupReq
		keys                        = make(map[ownerKey]bool, len(batch))
		ids                         = make(map[string]bool, len(batch))
	)
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- dbErr("write job", err)
			continue
		}
		if r.tr != nil {
			transitions = append(transitions, r)
			continue
		}
		k := ownerKey{r.job.Owner, r.job.IdempotencyKey}
		if keys[k] || ids[r.job.ID] {
			alone = append(alone, r)
			continue
		}
		keys[k], ids[r.job.ID] = true, true
		creates = append(creates, r)
	}
	if len(creates)+len(transitions) == 1 {
		alone = append(append(creates, transitions...), alone...)
		creates, transitions = nil, nil
	}
	if len(creates)+len(transitions) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), groupCommitTimeout)
		inserted, results, err := s.writeBatch(ctx, creates, transitions)
		cancel()
		if err != nil {
			// Some request may be bad: each alone, so that only it fails.
			alone = append(append(creates, transitions...), alone...)
		} else {
			var rows []outbox.Row
			for _, r := range creates {
				if inserted[r.job.ID] {
					rows = append(rows, r.rows...)
				}
			}
			for _, res := range results {
				rows = append(rows, res.rows...)
			}
			s.committed(rows)
			for _, r := range creates {
				if inserted[r.job.ID] {
					r.done <- nil
				} else {
					r.done <- fmt.Errorf("create job %s: %w", r.job.ID, app.ErrDuplicateIdempotencyKey)
				}
			}
			for i, r := range transitions {
				if res := results[i]; res.err != nil {
					r.done <- dbErr("transition job "+r.tr.id, res.err)
				} else {
					r.tr.stored = res.stored
					r.done <- nil
				}
			}
		}
	}
	for _, r := range alone {
		if r.tr != nil {
			r.done <- s.transitionOne(r)
		} else {
			r.done <- s.createOne(r)
		}
	}
}

// transitionResult is what one transition of a batch did: stored and rows,
// or err (a *passthrough: refused, nothing written).
type transitionResult struct {
	stored *domain.Job
	rows   []outbox.Row
	err    error
}

// writeBatch inserts the jobs of reqs whose (owner, idempotency key) is not
// stored yet, and their outbox rows, then applies transitions in order, in
// one transaction. It returns the ids of the jobs inserted and the result
// of each transition.
func (s *Store) writeBatch(ctx context.Context, reqs, transitions []*groupReq) (map[string]bool, []transitionResult, error) {
	var (
		inserted map[string]bool
		results  []transitionResult
	)
	err := s.writeTx(ctx, len(reqs), len(transitions), func(tx *sql.Tx) error {
		inserted = make(map[string]bool, len(reqs))
		results = make([]transitionResult, len(transitions))
		for lo := 0; lo < len(reqs); lo += jobsPerInsert {
			chunk := reqs[lo:min(lo+jobsPerInsert, len(reqs))]
			args := make([]any, 0, 10*len(chunk))
			for _, r := range chunk {
				args = append(args, jobArgs(r.job, r.doc)...)
			}
			q := `INSERT INTO jobs (id, owner, idempotency_key, status, tacc_system, created_at, updated_at, version, doc, resubmitted_from)
				VALUES ` + sqlstore.Tuples(10, len(chunk)) + ` ON CONFLICT (owner, idempotency_key) DO NOTHING RETURNING id`
			ids, err := sqlstore.QueryStrings(ctx, tx, s.db.Rebind(q), args...)
			if err != nil {
				return err
			}
			for _, id := range ids {
				inserted[id] = true
			}
		}
		batches := make([]outbox.Batch, 0, len(reqs))
		jobs := make([]*domain.Job, 0, len(reqs))
		for _, r := range reqs {
			if !inserted[r.job.ID] {
				continue
			}
			jobs = append(jobs, r.job)
			batches = append(batches, outbox.Batch{Key: r.job.ID, Rows: r.rows})
		}
		if err := s.insertTags(ctx, tx, jobs...); err != nil {
			return err
		}
		if err := s.Append(ctx, tx, batches...); err != nil {
			return err
		}
		for i, r := range transitions {
			stored, rows, err := s.transitionInTx(ctx, r.ctx, tx, r.tr)
			var p *passthrough
			switch {
			case errors.As(err, &p):
				results[i] = transitionResult{err: err}
			case err != nil:
				return err
			default:
				results[i] = transitionResult{stored: stored, rows: rows}
			}
		}
		return nil
	})
	return inserted, results, err
}
