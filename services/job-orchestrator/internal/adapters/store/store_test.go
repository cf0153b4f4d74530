package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/outbox"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func newStore(t testing.TB, db *sqlstore.DB, cfg store.Config) *store.Store {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, store.Migrate(ctx, db))
	require.NoError(t, store.Migrate(ctx, db), "migrating twice is a no-op")
	codec, err := events.NewCodec()
	require.NoError(t, err)
	s, err := store.New(db, codec, cfg)
	require.NoError(t, err)
	return s
}

func testSpec(system string) domain.Spec {
	s := domain.Spec{
		Name: "calibrate", Agent: domain.AgentAlphaCal, DatasetID: "VLASS2.1.T10t01",
		System: system, Partition: "normal", Allocation: "AST21001",
		Resources:   domain.Resources{Nodes: 1, CoresPerNode: 4, Walltime: time.Hour},
		Environment: map[string]string{"A": "1"}, Tags: []string{"x"},
	}
	s.ApplyDefaults()
	return s
}

func newJob(id, owner, key, system string, created time.Time) *domain.Job {
	return domain.NewJob(id, owner, testSpec(system), key, "corr-"+id, domain.Cost{NodeHours: 1}, created)
}

// lifecycle returns a job-lifecycle event of j for transition seq and its audit record.
func lifecycle(t testing.TB, j *domain.Job, seq int64) []app.OutboxRecord {
	t.Helper()
	meta := events.Meta{Producer: "job-orchestrator", UserID: j.Owner, CorrelationID: j.CorrelationID, Sequence: seq}
	var p events.Payload
	switch seq {
	case 1:
		p = events.JobSubmitted{JobID: j.ID, UserID: j.Owner, JobName: j.Spec.Name, Agent: string(j.Spec.Agent),
			TaccSystem: events.TaccSystemOther, Priority: events.JobPriority(j.Spec.Priority), ToStatus: events.JobStatusSubmitted,
			ResourceRequest: events.ResourceRequest{Nodes: 1, CoresPerNode: 1, WalltimeSeconds: 60}}
	default:
		p = events.JobQueued{JobID: j.ID, UserID: j.Owner, Scheduler: "local", SchedulerJobID: fmt.Sprint(seq),
			FromStatus: events.JobStatusSubmitted, ToStatus: events.JobStatusQueued}
	}
	lc, err := events.NewEvent(p, meta)
	require.NoError(t, err)
	audit, err := events.NewEvent(events.AuditActionRecorded{AuditID: "a-" + lc.EventID, Action: events.AuditActionUpdate,
		ActorUserID: j.Owner, ActorRole: "user", ResourceType: "job", ResourceID: j.ID, Outcome: events.AuditOutcomeSuccess},
		events.Meta{Producer: "job-orchestrator", UserID: j.Owner, CorrelationID: j.CorrelationID, CausationID: lc.EventID})
	require.NoError(t, err)
	return []app.OutboxRecord{{Event: lc}, {Event: audit}}
}

func count(t *testing.T, db *sqlstore.DB, query string, args ...any) int64 {
	t.Helper()
	return sqlstoretest.Count(t, db, query, args...)
}

func TestRepositoryContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		run  func(t *testing.T, db *sqlstore.DB, s *store.Store)
	}{
		{name: "create then get returns a deep copy with version 1", run: testCreateGet},
		{name: "idempotency key is unique per owner", run: testIdempotencyKey},
		{name: "concurrent creates with one key: exactly one wins", run: testConcurrentCreates},
		{name: "transition versions, history and outbox", run: testTransition},
		{name: "append to the outbox leaves the job alone", run: testAppendOutbox},
		{name: "concurrent transitions serialize", run: testConcurrentTransitions},
		{name: "list filters, order and paging", run: testList},
		{name: "list active", run: testListActive},
		{name: "claim submitted jobs for dispatch", run: testClaimSubmitted},
		{name: "list active versions and get many", run: testListActiveVersions},
		{name: "unreachable database wraps ErrUnavailable", run: testUnavailable},
	}
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					db := d.Open(t)
					tc.run(t, db, newStore(t, db, store.Config{}))
				})
			}
		})
	}
}

func testCreateGet(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	j := newJob("job-1", "alice", "key-1", domain.SystemFrontera, t0)
	out := lifecycle(t, j, 1)
	require.NoError(t, s.Create(ctx, j, out))

	want := j.Clone()
	want.Version = 1
	got, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, want, got)
	got.History[0].Reason = "changed by the caller"
	got.Spec.Environment["A"] = "changed"
	again, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, want, again, "Get returns a copy")

	byKey, err := s.GetByIdempotencyKey(ctx, "alice", "key-1")
	require.NoError(t, err)
	require.Equal(t, want, byKey)

	_, err = s.Get(ctx, "missing")
	require.ErrorIs(t, err, domain.ErrNotFound)
	_, err = s.GetByIdempotencyKey(ctx, "bob", "key-1")
	require.ErrorIs(t, err, domain.ErrNotFound)

	require.EqualValues(t, 2, count(t, db, "SELECT COUNT(*) FROM outbox WHERE job_id = ?", "job-1"))
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM outbox WHERE event_id = ? AND seq = 1 AND amqp_routing_key IS NOT NULL", out[0].Event.EventID))
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM outbox WHERE event_id = ? AND seq = 2 AND amqp_routing_key IS NULL", out[1].Event.EventID))
}

func testIdempotencyKey(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	first := newJob("job-1", "alice", "key-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, first, lifecycle(t, first, 1)))

	dup := newJob("job-2", "alice", "key-1", domain.SystemVista, t0.Add(time.Second))
	err := s.Create(ctx, dup, lifecycle(t, dup, 1))
	require.ErrorIs(t, err, app.ErrDuplicateIdempotencyKey)
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM jobs"), "nothing written")
	require.EqualValues(t, 2, count(t, db, "SELECT COUNT(*) FROM outbox"), "nothing written")

	other := newJob("job-3", "bob", "key-1", domain.SystemVista, t0)
	require.NoError(t, s.Create(ctx, other, lifecycle(t, other, 1)), "same key, other owner")

	sameID := newJob("job-1", "carol", "key-9", domain.SystemVista, t0)
	err = s.Create(ctx, sameID, lifecycle(t, sameID, 1))
	require.Error(t, err)
	require.NotErrorIs(t, err, app.ErrDuplicateIdempotencyKey)
	require.EqualValues(t, 2, count(t, db, "SELECT COUNT(*) FROM jobs"))
}

func testConcurrentCreates(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			j := newJob(fmt.Sprintf("job-%d", i), "alice", "same-key", domain.SystemFrontera, t0)
			errs[i] = s.Create(ctx, j, lifecycle(t, j, 1))
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
			continue
		}
		require.ErrorIs(t, err, app.ErrDuplicateIdempotencyKey)
	}
	require.Equal(t, 1, ok)
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM jobs"))
	require.EqualValues(t, 2, count(t, db, "SELECT COUNT(*) FROM outbox"))
}

func testAppendOutbox(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	j := newJob("job-1", "alice", "key-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, j, lifecycle(t, j, 1)))
	before, err := s.Get(ctx, "job-1")
	require.NoError(t, err)

	denied, err := events.NewEvent(events.AuditActionRecorded{AuditID: "a-denied", Action: events.AuditActionCancel,
		ActorUserID: "bob", ActorRole: "user", ResourceType: "job", ResourceID: j.ID, Outcome: events.AuditOutcomeDenied},
		events.Meta{Producer: "job-orchestrator", UserID: "bob"})
	require.NoError(t, err)
	require.NoError(t, s.AppendOutbox(ctx, "job-1", []app.OutboxRecord{{Event: denied}}))
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM outbox WHERE event_id = ? AND seq = 3", denied.EventID),
		"after the job's two records")
	after, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, before, after, "the job, its version included, is unchanged")

	err = s.AppendOutbox(ctx, "missing", []app.OutboxRecord{{Event: denied}})
	require.ErrorIs(t, err, domain.ErrNotFound)
	require.EqualValues(t, 3, count(t, db, "SELECT COUNT(*) FROM outbox"), "nothing written for a missing job")
}

func testTransition(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	j := newJob("job-1", "alice", "key-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, j, lifecycle(t, j, 1)))

	var queuedOut []app.OutboxRecord
	stored, err := s.Transition(ctx, "job-1", 1, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		require.EqualValues(t, 1, cur.Version)
		if _, err := cur.MarkQueued(domain.SchedulerRef{Scheduler: "local", ID: "42", SubmittedAt: t0}, t0.Add(time.Minute)); err != nil {
			return nil, err
		}
		queuedOut = lifecycle(t, cur, 2)
		return queuedOut, nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 2, stored.Version)
	require.Equal(t, domain.StatusQueued, stored.Status)
	require.Len(t, stored.History, 2)
	got, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, stored, got)
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM outbox WHERE event_id = ? AND seq = 3", queuedOut[0].Event.EventID))
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM outbox WHERE event_id = ? AND seq = 4", queuedOut[1].Event.EventID))

	called := false
	_, err = s.Transition(ctx, "job-1", 1, func(*domain.Job) ([]app.OutboxRecord, error) {
		called = true
		return nil, nil
	})
	require.ErrorIs(t, err, app.ErrVersionConflict)
	require.False(t, called, "mutate is not called on a version conflict")

	errBoom := errors.New("boom")
	_, err = s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		cur.ErrorMessage = "must not be stored"
		return lifecycle(t, cur, 3), errBoom
	})
	require.ErrorIs(t, err, errBoom)
	_, err = s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		_, err := cur.MarkQueued(domain.SchedulerRef{Scheduler: "local", ID: "43"}, t0)
		return nil, err
	})
	require.ErrorIs(t, err, domain.ErrIllegalTransition, "mutate's error stays matchable")
	after, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, stored, after, "nothing written")
	require.EqualValues(t, 4, count(t, db, "SELECT COUNT(*) FROM outbox"))

	claimed, err := s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		cur.Dispatch = domain.DispatchClaim{Token: "t", At: t0}
		return nil, nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 3, claimed.Version)
	require.Equal(t, "t", claimed.Dispatch.Token)

	const detail = "Priority: jobs of higher priority wait before it"
	waiting, err := s.Transition(ctx, "job-1", claimed.Version, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		require.True(t, cur.SetSchedulerDetail(detail))
		return nil, nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 4, waiting.Version)
	got, err = s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, detail, got.SchedulerDetail, "the scheduler's detail is stored with the job")
	require.Equal(t, waiting, got)
	require.EqualValues(t, 4, count(t, db, "SELECT COUNT(*) FROM outbox"), "a detail adds no outbox record")

	_, err = s.Transition(ctx, "missing", app.AnyVersion, func(*domain.Job) ([]app.OutboxRecord, error) { return nil, nil })
	require.ErrorIs(t, err, domain.ErrNotFound)
}

func testConcurrentTransitions(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	j := newJob("job-1", "alice", "key-1", domain.SystemFrontera, t0)
	require.NoError(t, s.Create(ctx, j, lifecycle(t, j, 1)))
	const n = 10
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Transition(ctx, "job-1", app.AnyVersion, func(cur *domain.Job) ([]app.OutboxRecord, error) {
				cur.Spec.Tags = append(cur.Spec.Tags, fmt.Sprint(i))
				return lifecycle(t, cur, 2), nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	got, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.EqualValues(t, 1+n, got.Version)
	require.Len(t, got.Spec.Tags, 1+n, "no lost update")
	require.EqualValues(t, 2+2*n, count(t, db, "SELECT COUNT(*) FROM outbox WHERE job_id = ?", "job-1"))
	require.EqualValues(t, 2+2*n, count(t, db, "SELECT MAX(seq) FROM outbox WHERE job_id = ?", "job-1"), "seq has no gaps")
}

func testList(t *testing.T, _ *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	owners := []string{"alice", "bob"}
	systems := []string{domain.SystemFrontera, domain.SystemVista}
	statuses := []domain.Status{domain.StatusSubmitted, domain.StatusRunning, domain.StatusFailed}
	var all []*domain.Job
	for i := range 24 {
		// Pairs of jobs share a creation time, so the id breaks the tie.
		j := newJob(fmt.Sprintf("job-%02d", i), owners[i%2], fmt.Sprintf("k-%d", i), systems[(i/2)%2], t0.Add(time.Duration(i/2)*time.Second))
		j.Status = statuses[i%3]
		require.NoError(t, s.Create(ctx, j, nil))
		j.Version = 1
		all = append(all, j)
	}
	slices.SortFunc(all, func(a, b *domain.Job) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return -cmpString(a.ID, b.ID)
	})
	filter := func(q app.ListQuery) []string {
		var ids []string
		for _, j := range all {
			switch {
			case q.Owner != "" && j.Owner != q.Owner,
				len(q.Statuses) > 0 && !slices.Contains(q.Statuses, j.Status),
				q.System != "" && j.Spec.System != q.System,
				!q.CreatedAfter.IsZero() && j.CreatedAt.Before(q.CreatedAfter),
				!q.CreatedBefore.IsZero() && !j.CreatedAt.Before(q.CreatedBefore):
				continue
			}
			ids = append(ids, j.ID)
		}
		return ids
	}
	tests := []struct {
		name string
		q    app.ListQuery
	}{
		{name: "everything", q: app.ListQuery{}},
		{name: "owner", q: app.ListQuery{Owner: "bob"}},
		{name: "statuses", q: app.ListQuery{Statuses: []domain.Status{domain.StatusRunning, domain.StatusFailed}}},
		{name: "system", q: app.ListQuery{System: domain.SystemVista}},
		{name: "created after is inclusive", q: app.ListQuery{CreatedAfter: t0.Add(3 * time.Second)}},
		{name: "created before is exclusive", q: app.ListQuery{CreatedBefore: t0.Add(3 * time.Second)}},
		{name: "all filters", q: app.ListQuery{Owner: "alice", Statuses: []domain.Status{domain.StatusSubmitted, domain.StatusFailed},
			System: domain.SystemFrontera, CreatedAfter: t0.Add(time.Second), CreatedBefore: t0.Add(10 * time.Second)}},
		{name: "no match", q: app.ListQuery{Owner: "nobody"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := filter(tc.q)
			for _, size := range []int{1, 5, 100} {
				var got []string
				q := tc.q
				q.Limit = size
				for page := 0; ; page++ {
					require.Less(t, page, 100)
					jobs, err := s.List(ctx, q)
					require.NoError(t, err)
					require.LessOrEqual(t, len(jobs), size)
					for _, j := range jobs {
						got = append(got, j.ID)
					}
					if len(jobs) < size {
						break
					}
					last := jobs[len(jobs)-1]
					q.After = &app.Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
				}
				require.Equal(t, want, got, "page size %d", size)
			}
		})
	}
	jobs, err := s.List(ctx, app.ListQuery{Limit: 1})
	require.NoError(t, err)
	require.Equal(t, all[0], jobs[0], "List returns whole jobs")
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testListActive(t *testing.T, _ *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	specs := []struct {
		id      string
		status  domain.Status
		updated time.Duration
	}{
		{"a", domain.StatusRunning, 5 * time.Second},
		{"b", domain.StatusCompleted, time.Second},
		{"c", domain.StatusSubmitted, 3 * time.Second},
		{"d", domain.StatusQueued, 1 * time.Second},
		{"e", domain.StatusCancelled, 0},
		{"f", domain.StatusFailed, 0},
		{"g", domain.StatusQueued, 4 * time.Second},
	}
	for _, sp := range specs {
		j := newJob(sp.id, "alice", "k-"+sp.id, domain.SystemFrontera, t0)
		j.Status = sp.status
		j.UpdatedAt = t0.Add(sp.updated)
		require.NoError(t, s.Create(ctx, j, nil))
	}
	ids := func(jobs []*domain.Job) []string {
		var out []string
		for _, j := range jobs {
			out = append(out, j.ID)
		}
		return out
	}
	jobs, err := s.ListActive(ctx, 10)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "c", "g", "a"}, ids(jobs))
	jobs, err = s.ListActive(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "c"}, ids(jobs))
	jobs, err = s.ListActive(ctx, 10, domain.StatusQueued, domain.StatusRunning)
	require.NoError(t, err)
	require.Equal(t, []string{"d", "g", "a"}, ids(jobs))
	jobs, err = s.ListActive(ctx, 1, domain.StatusQueued)
	require.NoError(t, err)
	require.Equal(t, []string{"d"}, ids(jobs))
	jobs, err = s.ListActive(ctx, 10, domain.StatusSubmitted)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, ids(jobs))
	_, err = s.ListActive(ctx, 10, domain.StatusCompleted)
	require.ErrorContains(t, err, "not an active status")
}

func testUnavailable(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	require.NoError(t, db.Close())
	j := newJob("job-1", "alice", "k", domain.SystemFrontera, t0)
	require.ErrorIs(t, s.Create(ctx, j, nil), domain.ErrUnavailable)
	_, err := s.Get(ctx, "job-1")
	require.ErrorIs(t, err, domain.ErrUnavailable)
	_, err = s.GetByIdempotencyKey(ctx, "alice", "k")
	require.ErrorIs(t, err, domain.ErrUnavailable)
	_, err = s.List(ctx, app.ListQuery{Limit: 1})
	require.ErrorIs(t, err, domain.ErrUnavailable)
	_, err = s.ListActive(ctx, 1)
	require.ErrorIs(t, err, domain.ErrUnavailable)
	_, err = s.Transition(ctx, "job-1", app.AnyVersion, func(*domain.Job) ([]app.OutboxRecord, error) { return nil, nil })
	require.ErrorIs(t, err, domain.ErrUnavailable)
	_, err = s.ClaimOutbox(ctx, outbox.LegKafka, "r", 1, time.Second)
	require.ErrorIs(t, err, domain.ErrUnavailable)
}
