package app_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	alice = app.Actor{UserID: "alice"}
	bob   = app.Actor{UserID: "bob"}
	admin = app.Actor{UserID: "root", Admin: true}
)

type fixture struct {
	app   *app.App
	repo  *apptest.MemRepo
	sched *apptest.FakeScheduler
	rec   *app.Reconciler
	clock *clock
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Millisecond) // strictly increasing creation times
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{repo: apptest.NewMemRepo(), sched: apptest.NewFakeScheduler(), clock: &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	cfg.WatchPollInterval = 20 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	f.app, err = app.New(cfg, app.Deps{Repo: f.repo, Scheduler: f.sched, Catalogue: domain.DefaultCatalogue(), Logger: logger, Now: f.clock.Now})
	require.NoError(t, err)
	rcfg := app.DefaultReconcilerConfig()
	rcfg.Interval, rcfg.MaxInterval = 5*time.Millisecond, 20*time.Millisecond
	f.rec, err = app.NewReconciler(f.app, rcfg, logger)
	require.NoError(t, err)
	return f
}

func spec() domain.Spec {
	return domain.Spec{
		Name: "calibrate", Agent: domain.AgentAlphaCal, DatasetID: "VLASS2.1.T10t01",
		System: domain.SystemLonestar6, Partition: "gpu-a100", Allocation: "AST21001",
		Resources: domain.Resources{Walltime: time.Hour},
	}
}

func (f *fixture) submit(t *testing.T, actor app.Actor, key string) *domain.Job {
	t.Helper()
	j, replayed, err := f.app.SubmitJob(context.Background(), actor, app.SubmitInput{IdempotencyKey: key, Spec: spec()})
	require.NoError(t, err)
	require.False(t, replayed)
	return j
}

func eventTypes(recs []app.OutboxRecord) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Event.EventType)
	}
	return out
}

// requireEncodable checks every outbox event against the Avro schemas.
func requireEncodable(t *testing.T, recs []app.OutboxRecord) {
	t.Helper()
	codec, err := events.NewCodec()
	require.NoError(t, err)
	for _, r := range recs {
		_, err := codec.Message(r.Event)
		require.NoError(t, err, r.Event.EventType)
	}
}

func TestSubmitJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := telemetry.WithCorrelationID(context.Background(), "corr-1")
	j, replayed, err := f.app.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: "k1", Spec: spec()})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Equal(t, domain.StatusSubmitted, j.Status)
	require.Equal(t, "alice", j.Owner)
	require.Equal(t, int64(1), j.Version)
	require.Equal(t, "corr-1", j.CorrelationID)
	require.Equal(t, int32(32), j.Spec.Resources.CoresPerNode, "AlphaCal defaults applied")
	require.InDelta(t, 2*0.35+0.10, j.Cost.USD, 1e-9, "1 node-hour and 2 GPU-hours")

	recs := f.repo.Events()
	require.Equal(t, []string{events.TypeJobSubmitted, events.TypeAuditActionRecorded}, eventTypes(recs))
	lc, audit := recs[0].Event, recs[1].Event
	require.Equal(t, int64(1), lc.Sequence)
	require.Equal(t, "corr-1", lc.CorrelationID)
	require.Equal(t, "alice", lc.UserID)
	require.Nil(t, lc.CausationID)
	require.Equal(t, lc.EventID, *audit.CausationID)
	require.Equal(t, events.AuditActionSubmit, audit.Payload.(events.AuditActionRecorded).Action)
	require.Equal(t, lc.EventID, j.History[0].EventID)
	requireEncodable(t, recs)
}

func TestSubmitJobIdempotency(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	first := f.submit(t, alice, "same-key")
	nEvents := len(f.repo.Events())

	again, replayed, err := f.app.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: "same-key", Spec: spec()})
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, first.ID, again.ID)
	require.Equal(t, 1, f.repo.Count())
	require.Len(t, f.repo.Events(), nEvents, "a replay writes nothing")

	other := spec()
	other.Name = "different"
	_, _, err = f.app.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: "same-key", Spec: other})
	require.ErrorIs(t, err, domain.ErrIdempotencyKeyReused)
	require.Equal(t, 1, f.repo.Count())

	bobs := f.submit(t, bob, "same-key")
	require.NotEqual(t, first.ID, bobs.ID, "keys are per user")
	require.Equal(t, 2, f.repo.Count())
}

func TestSubmitJobConcurrentRetries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Go(func() {
			j, _, err := f.app.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: "race", Spec: spec()})
			if err == nil {
				ids[i] = j.ID
			}
		})
	}
	wg.Wait()
	for _, id := range ids {
		require.Equal(t, ids[0], id)
	}
	require.Equal(t, 1, f.repo.Count())
}

func TestSubmitJobInvalidWritesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	bad := spec()
	bad.Partition = "nope"
	bad.Environment = map[string]string{"PATH": "/evil"}
	_, _, err := f.app.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: "", Spec: bad})
	var ve *domain.ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, []string{"idempotency_key", "spec.partition", "spec.environment[PATH]"}, ve.Fields())
	require.Zero(t, f.repo.Count())
	require.Empty(t, f.repo.Events())
}

func TestGetJobVisibility(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	j := f.submit(t, alice, "k")
	tests := []struct {
		name    string
		actor   app.Actor
		id      string
		wantErr error
	}{
		{name: "owner", actor: alice, id: j.ID},
		{name: "admin", actor: admin, id: j.ID},
		{name: "other user sees not found", actor: bob, id: j.ID, wantErr: domain.ErrNotFound},
		{name: "missing", actor: alice, id: "nope", wantErr: domain.ErrNotFound},
		{name: "empty id", actor: alice, id: "", wantErr: domain.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.app.GetJob(context.Background(), tt.actor, tt.id)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, j.ID, got.ID)
		})
	}
}

func TestListJobsPaging(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		want = append([]string{f.submit(t, alice, "k"+string(rune('a'+i))).ID}, want...)
	}
	f.submit(t, bob, "bob-1")

	var got []string
	token := ""
	pages := 0
	for {
		jobs, next, err := f.app.ListJobs(ctx, alice, app.ListInput{PageSize: 2, PageToken: token})
		require.NoError(t, err)
		pages++
		for _, j := range jobs {
			got = append(got, j.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Equal(t, want, got, "newest first, no duplicates, only the caller's")
	require.Equal(t, 3, pages)

	all, _, err := f.app.ListJobs(ctx, admin, app.ListInput{})
	require.NoError(t, err)
	require.Len(t, all, 6)

	_, next, err := f.app.ListJobs(ctx, alice, app.ListInput{PageSize: 2})
	require.NoError(t, err)
	tampered := []byte(next)
	tampered[3] ^= 1
	tests := []struct {
		name string
		in   app.ListInput
	}{
		{name: "tampered token", in: app.ListInput{PageSize: 2, PageToken: string(tampered)}},
		{name: "garbage token", in: app.ListInput{PageToken: "garbage"}},
		{name: "token with other filters", in: app.ListInput{PageSize: 2, PageToken: next, System: "vista"}},
		{name: "bad status", in: app.ListInput{Statuses: []domain.Status{"NOPE"}}},
		{name: "bad page size", in: app.ListInput{PageSize: 501}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.app.ListJobs(ctx, alice, tt.in)
			require.ErrorIs(t, err, domain.ErrInvalidArgument)
		})
	}
	// Bob cannot use Alice's token to page through her jobs: it is bound
	// to the owner filter.
	_, _, err = f.app.ListJobs(ctx, bob, app.ListInput{PageSize: 2, PageToken: next})
	require.ErrorIs(t, err, domain.ErrInvalidArgument)

	filtered, _, err := f.app.ListJobs(ctx, alice, app.ListInput{Statuses: []domain.Status{domain.StatusRunning}})
	require.NoError(t, err)
	require.Empty(t, filtered)
}

func TestCancelJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()

	j := f.submit(t, alice, "k1")
	before := len(f.repo.Events())
	_, err := f.app.CancelJob(ctx, app.Actor{UserID: "bob", IP: "192.0.2.7"}, j.ID, "not mine")
	require.ErrorIs(t, err, domain.ErrNotFound)
	// The refused cancel is audited, and the job is unchanged.
	evs := f.repo.Events()
	require.Len(t, evs, before+1)
	denied, ok := evs[before].Event.Payload.(events.AuditActionRecorded)
	require.True(t, ok, "%T", evs[before].Event.Payload)
	require.Equal(t, events.AuditActionCancel, denied.Action)
	require.Equal(t, events.AuditOutcomeDenied, denied.Outcome)
	require.Equal(t, "bob", denied.ActorUserID)
	require.Equal(t, j.ID, denied.ResourceID)
	require.Equal(t, "192.0.2.7", *denied.IPAddress)
	unchanged, err := f.app.GetJob(ctx, alice, j.ID)
	require.NoError(t, err)
	require.Equal(t, j.Version, unchanged.Version)
	require.Equal(t, domain.StatusSubmitted, unchanged.Status)
	// A job that does not exist leaves nothing to audit.
	_, err = f.app.CancelJob(ctx, bob, "no-such-job", "")
	require.ErrorIs(t, err, domain.ErrNotFound)
	require.Len(t, f.repo.Events(), before+1)
	requireEncodable(t, evs)

	c1, err := f.app.CancelJob(ctx, alice, j.ID, "changed my mind")
	require.NoError(t, err)
	require.Equal(t, domain.StatusCancelled, c1.Status)
	require.Equal(t, "alice", c1.CancelledBy)
	n := len(f.repo.Events())
	c2, err := f.app.CancelJob(ctx, alice, j.ID, "again")
	require.NoError(t, err, "cancel is idempotent")
	require.Equal(t, c1.Version, c2.Version)
	require.Len(t, f.repo.Events(), n, "a second cancel writes nothing")
	require.Empty(t, f.sched.Cancelled, "the job never reached the scheduler")

	// A queued job is cancelled at the scheduler too, by an admin.
	q := f.submit(t, alice, "k2")
	f.rec.Pass(ctx)
	c3, err := f.app.CancelJob(ctx, admin, q.ID, "maintenance")
	require.NoError(t, err)
	require.Equal(t, domain.StatusCancelled, c3.Status)
	require.Equal(t, []string{c3.SchedulerRef.ID}, f.sched.Cancelled)

	// Scheduler outage: Unavailable, nothing changes.
	r := f.submit(t, alice, "k3")
	f.rec.Pass(ctx)
	f.sched.SetErrors(errDown, nil)
	_, err = f.app.CancelJob(ctx, alice, r.ID, "")
	require.ErrorIs(t, err, domain.ErrUnavailable)
	still, err := f.app.GetJob(ctx, alice, r.ID)
	require.NoError(t, err)
	require.Equal(t, domain.StatusQueued, still.Status)
	f.sched.SetErrors(nil, nil)

	// A finished job cannot be cancelled.
	exit := int32(0)
	f.sched.Set(still.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit})
	f.rec.Pass(ctx)
	_, err = f.app.CancelJob(ctx, alice, r.ID, "")
	require.ErrorIs(t, err, domain.ErrIllegalTransition)

	var types []string
	for _, rec := range f.repo.Events() {
		if rec.Event.EventType == events.TypeAuditActionRecorded && rec.Event.Payload.(events.AuditActionRecorded).Action == events.AuditActionCancel {
			types = append(types, rec.Event.UserID)
		}
	}
	require.Equal(t, []string{"bob", "alice", "root"}, types, "each cancel is audited with its actor, the refused one too")
	requireEncodable(t, f.repo.Events())
}

func TestWatchJobReplayEndsAtTerminal(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	j := f.submit(t, alice, "k")

	var (
		mu  sync.Mutex
		got []domain.Transition
	)
	done := make(chan error, 1)
	go func() {
		done <- f.app.WatchJob(ctx, alice, j.ID, true, func(tr domain.Transition) error {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, tr)
			return nil
		})
	}()
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, 5*time.Second, 5*time.Millisecond)

	f.rec.Pass(ctx) // QUEUED
	queued, err := f.app.GetJob(ctx, alice, j.ID)
	require.NoError(t, err)
	f.sched.Set(queued.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING"})
	f.rec.Pass(ctx)
	exit := int32(3)
	f.sched.Set(queued.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseFailed, State: "FAILED", ExitCode: &exit})
	f.rec.Pass(ctx)

	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("watch did not end at the terminal status")
	}
	mu.Lock()
	defer mu.Unlock()
	var seqs []int64
	var to []domain.Status
	for _, tr := range got {
		seqs = append(seqs, tr.Sequence)
		to = append(to, tr.To)
		require.NotEmpty(t, tr.EventID)
	}
	require.Equal(t, []int64{1, 2, 3, 4}, seqs)
	require.Equal(t, []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning, domain.StatusFailed}, to)

	// Watching a finished job without replay ends at once; a foreign job is
	// not found.
	var sent atomic.Int32
	require.NoError(t, f.app.WatchJob(ctx, alice, j.ID, false, func(domain.Transition) error { sent.Add(1); return nil }))
	require.Zero(t, sent.Load())
	require.ErrorIs(t, f.app.WatchJob(ctx, bob, j.ID, true, func(domain.Transition) error { return nil }), domain.ErrNotFound)
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*app.Config)
		ok     bool
	}{
		{name: "valid", mutate: func(*app.Config) {}, ok: true},
		{name: "short key", mutate: func(c *app.Config) { c.PageTokenKey = "short" }},
		{name: "no producer", mutate: func(c *app.Config) { c.Producer = "" }},
		{name: "negative rate", mutate: func(c *app.Config) { c.Rates.USDPerGPUHour = -1 }},
		{name: "page sizes", mutate: func(c *app.Config) { c.MaxPageSize = 1 }},
		{name: "relative work dir", mutate: func(c *app.Config) { c.WorkDir = "jobs" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := app.DefaultConfig()
			c.PageTokenKey = "0123456789abcdef"
			tt.mutate(&c)
			if tt.ok {
				require.NoError(t, c.Validate())
			} else {
				require.Error(t, c.Validate())
			}
		})
	}
}

// readCounter counts the reads of a repository.
type readCounter struct {
	*apptest.MemRepo
	reads atomic.Int64
}

func (r *readCounter) Get(ctx context.Context, id string) (*domain.Job, error) {
	r.reads.Add(1)
	return r.MemRepo.Get(ctx, id)
}

func (r *readCounter) GetByIdempotencyKey(ctx context.Context, owner, key string) (*domain.Job, error) {
	r.reads.Add(1)
	return r.MemRepo.GetByIdempotencyKey(ctx, owner, key)
}

// A new submission is one write and no read: the key is checked by the
// write itself, and the stored job is what SubmitJob built. A retry reads
// the first job once.
func TestSubmitJobNewKeyReadsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	repo := &readCounter{MemRepo: f.repo}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	a, err := app.New(cfg, app.Deps{Repo: repo, Scheduler: f.sched, Catalogue: domain.DefaultCatalogue(), Logger: slogDiscard(), Now: f.clock.Now})
	require.NoError(t, err)

	j, replayed, err := a.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: "k1", Spec: spec()})
	require.NoError(t, err)
	require.False(t, replayed)
	require.Zero(t, repo.reads.Load(), "no read for a new key")
	stored, err := f.repo.Get(context.Background(), j.ID)
	require.NoError(t, err)
	require.Equal(t, stored, j, "the job returned is the job stored")

	again, replayed, err := a.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: "k1", Spec: spec()})
	require.NoError(t, err)
	require.True(t, replayed)
	require.Equal(t, stored, again)
	require.EqualValues(t, 1, repo.reads.Load(), "a retry reads the first job once")
}
