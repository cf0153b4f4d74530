// Package apptest holds in-memory fakes of the use cases' ports for the
// unit tests of app and ports; the SQL store and the real schedulers have
// their own contract suites.
package apptest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// MemRepo is an in-memory JobRepository for unit tests.
// It follows the contract documented on app.JobRepository.
type MemRepo struct {
	mu     sync.Mutex
	jobs   map[string]*domain.Job
	outbox []app.OutboxRecord
	// failWith, when set, fails every call (an unreachable database).
	failWith error
}

// SetFailure makes every later call fail with err (an unreachable
// database); nil ends the outage.
func (r *MemRepo) SetFailure(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failWith = err
}

// NewMemRepo returns an empty repository.
func NewMemRepo() *MemRepo { return &MemRepo{jobs: map[string]*domain.Job{}} }

func (r *MemRepo) Create(_ context.Context, j *domain.Job, out []app.OutboxRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return r.failWith
	}
	for _, o := range r.jobs {
		if o.Owner == j.Owner && o.IdempotencyKey == j.IdempotencyKey {
			return fmt.Errorf("create job %s: %w", j.ID, app.ErrDuplicateIdempotencyKey)
		}
	}
	if _, ok := r.jobs[j.ID]; ok {
		return fmt.Errorf("create job %s: duplicate id", j.ID)
	}
	c := j.Clone()
	c.Version = 1
	r.jobs[j.ID] = c
	r.outbox = append(r.outbox, out...)
	return nil
}

func (r *MemRepo) Get(_ context.Context, id string) (*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	j, ok := r.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %s: %w", id, domain.ErrNotFound)
	}
	return j.Clone(), nil
}

func (r *MemRepo) GetByIdempotencyKey(_ context.Context, owner, key string) (*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	for _, j := range r.jobs {
		if j.Owner == owner && j.IdempotencyKey == key {
			return j.Clone(), nil
		}
	}
	return nil, domain.ErrNotFound
}

func (r *MemRepo) sorted() []*domain.Job {
	out := make([]*domain.Job, 0, len(r.jobs))
	for _, j := range r.jobs {
		out = append(out, j)
	}
	slices.SortFunc(out, func(a, b *domain.Job) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		switch {
		case a.ID > b.ID:
			return -1
		case a.ID < b.ID:
			return 1
		}
		return 0
	})
	return out
}

func (r *MemRepo) List(_ context.Context, q app.ListQuery) ([]*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	var out []*domain.Job
	for _, j := range r.sorted() {
		switch {
		case q.Owner != "" && j.Owner != q.Owner,
			len(q.Statuses) > 0 && !slices.Contains(q.Statuses, j.Status),
			q.System != "" && j.Spec.System != q.System,
			!q.CreatedAfter.IsZero() && j.CreatedAt.Before(q.CreatedAfter),
			!q.CreatedBefore.IsZero() && !j.CreatedAt.Before(q.CreatedBefore),
			!hasTags(j, q.Tags):
			continue
		}
		if q.After != nil {
			c := j.CreatedAt.Compare(q.After.CreatedAt)
			if c > 0 || (c == 0 && j.ID >= q.After.ID) {
				continue
			}
		}
		out = append(out, j.Clone())
		if len(out) == q.Limit {
			break
		}
	}
	return out, nil
}

func hasTags(j *domain.Job, tags []string) bool {
	for _, t := range tags {
		if !slices.Contains(j.Spec.Tags, t) {
			return false
		}
	}
	return true
}

func (r *MemRepo) ListActive(_ context.Context, limit int, statuses ...domain.Status) ([]*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	var out []*domain.Job
	for _, j := range r.jobs {
		if !j.Status.Terminal() && (len(statuses) == 0 || slices.Contains(statuses, j.Status)) {
			out = append(out, j.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *domain.Job) int { return a.UpdatedAt.Compare(b.UpdatedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (r *MemRepo) ListActiveVersions(ctx context.Context, limit int, statuses ...domain.Status) ([]app.JobVersion, error) {
	jobs, err := r.ListActive(ctx, limit, statuses...)
	if err != nil {
		return nil, err
	}
	out := make([]app.JobVersion, len(jobs))
	for i, j := range jobs {
		out[i] = app.JobVersion{ID: j.ID, Version: j.Version}
	}
	return out, nil
}

func (r *MemRepo) GetMany(_ context.Context, ids []string) ([]*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	var out []*domain.Job
	for _, id := range ids {
		if j, ok := r.jobs[id]; ok {
			out = append(out, j.Clone())
		}
	}
	return out, nil
}

func (r *MemRepo) ClaimSubmitted(_ context.Context, token string, now time.Time, lease time.Duration, limit int) ([]*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	if token == "" || limit <= 0 || lease <= 0 {
		return nil, fmt.Errorf("claim submitted jobs: token %q, limit %d, lease %s", token, limit, lease)
	}
	var free []*domain.Job
	for _, j := range r.jobs {
		if j.Status == domain.StatusSubmitted && (j.Dispatch.Token == "" || now.Sub(j.Dispatch.At) >= lease) {
			free = append(free, j)
		}
	}
	slices.SortFunc(free, func(a, b *domain.Job) int {
		return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.ID, b.ID))
	})
	var out []*domain.Job
	for _, j := range free[:min(limit, len(free))] {
		c := j.Clone()
		uncertain := c.Dispatch.Uncertain
		if c.Dispatch.Token != "" && uncertain.IsZero() {
			uncertain = c.Dispatch.At
		}
		c.Dispatch = domain.DispatchClaim{Token: token, At: now, Uncertain: uncertain}
		c.Version = j.Version + 1
		r.jobs[j.ID] = c
		out = append(out, c.Clone())
	}
	return out, nil
}

func (r *MemRepo) Transition(_ context.Context, id string, expected int64, mutate func(*domain.Job) ([]app.OutboxRecord, error)) (*domain.Job, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return nil, r.failWith
	}
	j, ok := r.jobs[id]
	if !ok {
		return nil, fmt.Errorf("job %s: %w", id, domain.ErrNotFound)
	}
	if expected != app.AnyVersion && expected != j.Version {
		return nil, fmt.Errorf("job %s at version %d, expected %d: %w", id, j.Version, expected, app.ErrVersionConflict)
	}
	c := j.Clone()
	out, err := mutate(c)
	if err != nil {
		return nil, err
	}
	c.Version = j.Version + 1
	r.jobs[id] = c
	r.outbox = append(r.outbox, out...)
	return c.Clone(), nil
}

func (r *MemRepo) AppendOutbox(_ context.Context, id string, out []app.OutboxRecord) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return r.failWith
	}
	if _, ok := r.jobs[id]; !ok {
		return fmt.Errorf("job %s: %w", id, domain.ErrNotFound)
	}
	r.outbox = append(r.outbox, out...)
	return nil
}

func (r *MemRepo) Events() []app.OutboxRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.outbox)
}

func (r *MemRepo) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.jobs)
}

// FakeScheduler is a Scheduler whose answers the test sets.
// FakeScheduler is a Scheduler whose job states the test sets; Submitted and
// Cancelled record the calls (read them once the calls have returned).
type FakeScheduler struct {
	mu        sync.Mutex
	next      int
	status    map[string]app.SchedulerStatus
	statusErr error
	submitErr error
	// loseAnswers makes Submit keep the job but answer with submitErr, as
	// when the answer of an accepted submission is lost.
	loseAnswers bool
	byJob       map[string]app.SchedulerRef
	Submitted   []app.SubmitRequest
	Cancelled   []string
	Calls       int
}

// NewFakeScheduler returns a scheduler that knows no job.
func NewFakeScheduler() *FakeScheduler {
	return &FakeScheduler{status: map[string]app.SchedulerStatus{}, byJob: map[string]app.SchedulerRef{}}
}

func (s *FakeScheduler) Name() string { return "fake" }

func (s *FakeScheduler) Submit(_ context.Context, req app.SubmitRequest) (app.SchedulerRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.submitErr != nil && !s.loseAnswers {
		return app.SchedulerRef{}, s.submitErr
	}
	if ref, ok := s.byJob[req.JobID]; ok && req.Resubmit {
		return ref, nil
	}
	s.next++
	id := strconv.Itoa(s.next)
	s.Submitted = append(s.Submitted, req)
	s.status[id] = app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING"}
	ref := app.SchedulerRef{ID: id, SubmittedAt: time.Unix(1700000000, 0).UTC()}
	s.byJob[req.JobID] = ref
	if s.loseAnswers {
		return app.SchedulerRef{}, s.submitErr
	}
	return ref, nil
}

// LoseAnswers makes Submit accept jobs but fail with err (nil: answer again).
func (s *FakeScheduler) LoseAnswers(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loseAnswers, s.submitErr = err != nil, err
}

func (s *FakeScheduler) Status(_ context.Context, ref app.SchedulerRef) (app.SchedulerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Calls++
	if s.statusErr != nil {
		return app.SchedulerStatus{}, s.statusErr
	}
	st, ok := s.status[ref.ID]
	if !ok {
		return app.SchedulerStatus{}, app.ErrUnknownJob
	}
	return st, nil
}

func (s *FakeScheduler) Cancel(_ context.Context, ref app.SchedulerRef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.statusErr != nil {
		return s.statusErr
	}
	s.Cancelled = append(s.Cancelled, ref.ID)
	return nil
}

func (s *FakeScheduler) Set(id string, st app.SchedulerStatus) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[id] = st
}

func (s *FakeScheduler) Forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.status, id)
}

func (s *FakeScheduler) SetErrors(status, submit error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statusErr, s.submitErr = status, submit
}

// BulkFakeScheduler is a FakeScheduler that also answers StatusMany, from
// which the test can hide jobs (as when a job drops out of a bulk answer).
type BulkFakeScheduler struct {
	*FakeScheduler
	hidden    map[string]bool
	BulkCalls int
}

var _ app.BulkStatuser = (*BulkFakeScheduler)(nil)

// NewBulkFakeScheduler returns a bulk scheduler that knows no job.
func NewBulkFakeScheduler() *BulkFakeScheduler {
	return &BulkFakeScheduler{FakeScheduler: NewFakeScheduler(), hidden: map[string]bool{}}
}

// StatusMany implements app.BulkStatuser.
func (s *BulkFakeScheduler) StatusMany(_ context.Context, refs []app.SchedulerRef) (map[string]app.SchedulerStatus, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.BulkCalls++
	if s.statusErr != nil {
		return nil, s.statusErr
	}
	out := map[string]app.SchedulerStatus{}
	for _, ref := range refs {
		if st, ok := s.status[ref.ID]; ok && !s.hidden[ref.ID] {
			out[ref.ID] = st
		}
	}
	return out, nil
}

// Hide leaves the job out of StatusMany answers (Status still knows it).
func (s *BulkFakeScheduler) Hide(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hidden[id] = true
}

// Counts returns the StatusMany and Status calls so far.
func (s *BulkFakeScheduler) Counts() (bulk, single int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.BulkCalls, s.Calls
}
