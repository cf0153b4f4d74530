package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// countingRepo counts what the reconciler reads and writes through a
// MemRepo: job documents read (every job a read returns), claim
// statements, transitions, and the most transitions in flight at once.
// With hold set, a transition waits (up to three seconds) until hold of them are
// in flight, so that the peak shows how many a pass lets wait together.
type countingRepo struct {
	*apptest.MemRepo
	hold int

	mu          sync.Mutex
	docs        int
	claims      int
	transitions int
	inFlight    int
	peak        int
	arrived     chan struct{}
}

func (c *countingRepo) read(n int) {
	c.mu.Lock()
	c.docs += n
	c.mu.Unlock()
}

func (c *countingRepo) counts() (docs, claims, transitions, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.docs, c.claims, c.transitions, c.peak
}

func (c *countingRepo) ListActive(ctx context.Context, limit int, statuses ...domain.Status) ([]*domain.Job, error) {
	jobs, err := c.MemRepo.ListActive(ctx, limit, statuses...)
	c.read(len(jobs))
	return jobs, err
}

func (c *countingRepo) GetMany(ctx context.Context, ids []string) ([]*domain.Job, error) {
	jobs, err := c.MemRepo.GetMany(ctx, ids)
	c.read(len(jobs))
	return jobs, err
}

func (c *countingRepo) Get(ctx context.Context, id string) (*domain.Job, error) {
	j, err := c.MemRepo.Get(ctx, id)
	c.read(1)
	return j, err
}

func (c *countingRepo) ClaimSubmitted(ctx context.Context, token string, now time.Time, lease time.Duration, limit int) ([]*domain.Job, error) {
	jobs, err := c.MemRepo.ClaimSubmitted(ctx, token, now, lease, limit)
	c.mu.Lock()
	c.claims++
	c.docs += len(jobs)
	c.mu.Unlock()
	return jobs, err
}

func (c *countingRepo) Transition(ctx context.Context, id string, expected int64, mutate func(*domain.Job) ([]app.OutboxRecord, error)) (*domain.Job, error) {
	c.mu.Lock()
	c.transitions++
	c.inFlight++
	c.peak = max(c.peak, c.inFlight)
	if c.inFlight == c.hold {
		close(c.arrived)
	}
	arrived := c.arrived
	c.mu.Unlock()
	if c.hold > 0 {
		select {
		case <-arrived:
		case <-time.After(3 * time.Second):
		}
	}
	defer func() {
		c.mu.Lock()
		c.inFlight--
		c.mu.Unlock()
	}()
	return c.MemRepo.Transition(ctx, id, expected, mutate)
}

// countingFixture is an App and Reconciler over a countingRepo and a bulk
// scheduler, with n jobs submitted.
func countingFixture(t *testing.T, rcfg app.ReconcilerConfig, hold, n int) (*countingRepo, *apptest.BulkFakeScheduler, *app.App, *app.Reconciler) {
	t.Helper()
	repo := &countingRepo{MemRepo: apptest.NewMemRepo(), hold: hold, arrived: make(chan struct{})}
	sched := apptest.NewBulkFakeScheduler()
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	a, err := app.New(cfg, app.Deps{Repo: repo, Scheduler: sched, Catalogue: domain.DefaultCatalogue(), Logger: slogDiscard(), Now: clk.Now})
	require.NoError(t, err)
	rec, err := app.NewReconciler(a, rcfg, slogDiscard())
	require.NoError(t, err)
	for i := range n {
		_, _, err := a.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: fmt.Sprintf("k%d", i), Spec: spec()})
		require.NoError(t, err)
	}
	return repo, sched, a, rec
}

// A pass hands its SUBMITTED jobs out with one claim statement and records
// each dispatch with one transition (QUEUED), not a claim transition too.
func TestReconcilerClaimsSubmittedJobsInOneStatement(t *testing.T) {
	t.Parallel()
	const n = 30
	repo, sched, _, rec := countingFixture(t, app.DefaultReconcilerConfig(), 0, n)
	_, claims0, tr0, _ := repo.counts()
	res := rec.Pass(context.Background())
	require.Equal(t, n, res.Dispatched)
	require.Len(t, sched.Submitted, n)
	_, claims, tr, _ := repo.counts()
	require.Equal(t, 1, claims-claims0, "one claim statement per pass")
	require.Equal(t, n, tr-tr0, "one transition per dispatched job")
}

// Polling jobs the scheduler reports unchanged reads no job document again;
// a job that changed is read again, alone.
func TestReconcilerReadsOnlyChangedJobs(t *testing.T) {
	t.Parallel()
	const n = 40
	repo, sched, a, rec := countingFixture(t, app.DefaultReconcilerConfig(), 0, n)
	ctx := context.Background()
	require.Equal(t, n, rec.Pass(ctx).Dispatched)
	rec.Pass(ctx) // reads the queued jobs once
	docs, _, _, _ := repo.counts()
	for range 3 {
		res := rec.Pass(ctx)
		require.Zero(t, res.Applied+res.Errors+res.Conflicts, "%+v", res)
	}
	again, _, _, _ := repo.counts()
	require.Equal(t, docs, again, "unchanged jobs are not read again")

	jobs, err := repo.MemRepo.ListActive(ctx, 1, domain.StatusQueued)
	require.NoError(t, err)
	moved := jobs[0]
	sched.Set(moved.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)})
	require.Equal(t, 1, rec.Pass(ctx).Applied)
	before, _, _, _ := repo.counts()
	require.Zero(t, rec.Pass(ctx).Applied)
	after, _, _, _ := repo.counts()
	require.Equal(t, 1, after-before, "only the job that changed is read again")
	got, err := a.GetJob(ctx, admin, moved.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusRunning, got.Status)
}

// The transitions of a pass wait for the database together, not Parallel
// at a time: with Parallel 1, the QUEUED records of 20 dispatched jobs and
// the RUNNING records of 20 polled ones are in flight at once.
func TestReconcilerWritesOfAPassWaitTogether(t *testing.T) {
	t.Parallel()
	const n = 20
	rcfg := app.DefaultReconcilerConfig()
	rcfg.Parallel = 1
	repo, sched, _, rec := countingFixture(t, rcfg, n, n)
	ctx := context.Background()
	require.Equal(t, n, rec.Pass(ctx).Dispatched)
	_, _, _, peak := repo.counts()
	require.Equal(t, n, peak, "QUEUED records in flight at once")

	repo.mu.Lock()
	repo.peak, repo.arrived = 0, make(chan struct{})
	repo.mu.Unlock()
	for i := range n {
		sched.Set(fmt.Sprint(i+1), app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)})
	}
	require.Equal(t, n, rec.Pass(ctx).Applied)
	_, _, _, peak = repo.counts()
	require.Equal(t, n, peak, "RUNNING records in flight at once")
}

// A pass claims many jobs at once, but submits none whose claim is half a
// lease old: with a slow scheduler the lease could end during the
// submission and another replica submit the job too. Such claims are given
// back, not left to expire (which would make the next attempt uncertain).
func TestReconcilerGivesBackClaimsTooOldToSubmit(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		ids = append(ids, f.submit(t, alice, fmt.Sprintf("slow-%d", i)).ID)
	}
	slow := &cancellingScheduler{FakeScheduler: f.sched, onSubmit: func() { f.clock.advance(10 * time.Second) }}
	acfg := app.DefaultConfig()
	acfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	a, err := app.New(acfg, app.Deps{Repo: f.repo, Scheduler: slow, Catalogue: domain.DefaultCatalogue(), Logger: slogDiscard(), Now: f.clock.Now})
	require.NoError(t, err)
	cfg := app.DefaultReconcilerConfig()
	cfg.Parallel, cfg.DispatchLease = 1, 15*time.Second
	rec, err := app.NewReconciler(a, cfg, slogDiscard())
	require.NoError(t, err)

	res := rec.Pass(ctx)
	require.Equal(t, 1, res.Dispatched, "%+v", res)
	require.Zero(t, res.Errors)
	var queued, back int
	for _, id := range ids {
		j := f.job(t, id)
		switch j.Status {
		case domain.StatusQueued:
			queued++
		case domain.StatusSubmitted:
			back++
			require.Equal(t, domain.DispatchClaim{}, j.Dispatch, "the claim is given back, not left to expire")
		}
	}
	require.Equal(t, []int{1, 2}, []int{queued, back})
	require.Equal(t, 1, rec.Pass(ctx).Dispatched, "the next pass claims them afresh")
	require.Len(t, f.sched.Submitted, 2)
	require.False(t, f.sched.Submitted[1].Resubmit, "a claim given back is no uncertain attempt")
}

// While dispatch is held, SUBMITTED jobs stay with the fleet and the jobs
// already at the scheduler are still polled and recorded.
func TestReconcilerHoldDispatchPollsButSubmitsNothing(t *testing.T) {
	t.Parallel()
	const n = 5
	repo, sched, a, rec := countingFixture(t, app.DefaultReconcilerConfig(), 0, n)
	ctx := context.Background()
	require.Equal(t, n, rec.Pass(ctx).Dispatched)
	_, _, err := a.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: "held", Spec: spec()})
	require.NoError(t, err)

	cfg := app.DefaultReconcilerConfig()
	cfg.HoldDispatch = true
	held, err := app.NewReconciler(a, cfg, slogDiscard())
	require.NoError(t, err)
	queued, err := repo.MemRepo.ListActive(ctx, 1, domain.StatusQueued)
	require.NoError(t, err)
	sched.Set(queued[0].SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)})
	res := held.Pass(ctx)
	require.Zero(t, res.Dispatched, "%+v", res)
	require.Equal(t, 1, res.Applied, "the job at the scheduler is still recorded")
	require.Len(t, sched.Submitted, n)
	waiting, err := repo.MemRepo.ListActive(ctx, 10, domain.StatusSubmitted)
	require.NoError(t, err)
	require.Len(t, waiting, 1)
	require.EqualValues(t, 1, held.Passes(), "a held pass is counted")

	require.Equal(t, 1, rec.Pass(ctx).Dispatched, "released, the held job is dispatched")
	require.EqualValues(t, 2, rec.Passes())
}

// TestReconcilerHeldIgnoresKicks: while dispatch is held, a submission
// (which kicks the reconciler) does not make an early pass; the pause
// between passes is Interval.
func TestReconcilerHeldIgnoresKicks(t *testing.T) {
	t.Parallel()
	cfg := app.DefaultReconcilerConfig()
	cfg.HoldDispatch = true
	cfg.Interval, cfg.MaxInterval = time.Hour, time.Hour
	_, _, a, rec := countingFixture(t, cfg, 0, 0)
	ctx := runReconciler(t, rec)
	require.Eventually(t, func() bool { return rec.Passes() == 1 }, 5*time.Second, time.Millisecond, "the first pass runs at once")
	for i := range 5 {
		_, _, err := a.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: fmt.Sprint("held-", i), Spec: spec()})
		require.NoError(t, err)
	}
	require.Never(t, func() bool { return rec.Passes() > 1 }, 300*time.Millisecond, 5*time.Millisecond)
}
