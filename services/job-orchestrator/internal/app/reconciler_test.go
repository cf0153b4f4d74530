package app_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func (f *fixture) job(t *testing.T, id string) *domain.Job {
	t.Helper()
	j, err := f.app.GetJob(context.Background(), admin, id)
	require.NoError(t, err)
	return j
}

// jobEvents lists the types of the events keyed by jobID (lifecycle,
// metrics, and audit records whose resource is the job), in outbox order.
func jobEvents(recs []app.OutboxRecord, jobID string) []string {
	var out []string
	for _, r := range recs {
		if r.Event.Key() == jobID {
			out = append(out, r.Event.EventType)
		}
	}
	return out
}

func TestReconcilerHappyPathExactlyOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	j := f.submit(t, alice, "k")

	res := f.rec.Pass(ctx)
	require.Equal(t, 1, res.Dispatched)
	q := f.job(t, j.ID)
	require.Equal(t, domain.StatusQueued, q.Status)
	require.Equal(t, "fake", q.SchedulerRef.Scheduler)
	require.Len(t, f.sched.Submitted, 1)
	req := f.sched.Submitted[0]
	require.Equal(t, j.ID, req.JobID)
	require.Equal(t, "AST21001", req.Account)
	require.Equal(t, "/var/lib/fleet/jobs/"+j.ID, req.WorkDir)
	require.Equal(t, "VLASS2.1.T10t01", req.Environment[domain.EnvDatasetID])
	require.NotContains(t, req.Script, "VLASS2.1.T10t01")

	// Polling a queued job again and again changes nothing.
	for range 3 {
		require.Zero(t, f.rec.Pass(ctx).Applied)
	}
	start := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: start, NodeList: []string{"c001"}})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)
	require.Zero(t, f.rec.Pass(ctx).Applied, "a repeated poll applies nothing")
	r := f.job(t, j.ID)
	require.Equal(t, domain.StatusRunning, r.Status)
	require.Equal(t, start, r.StartedAt)

	exit := int32(0)
	cpu := 90 * time.Minute
	rss := int64(1 << 30)
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit,
		StartTime: start, EndTime: start.Add(30 * time.Minute), CPUTime: &cpu, MaxRSSBytes: &rss})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)
	require.Zero(t, f.rec.Pass(ctx).Applied)
	c := f.job(t, j.ID)
	require.Equal(t, domain.StatusCompleted, c.Status)
	require.InDelta(t, 0.5, c.Cost.NodeHours, 1e-9, "repriced by the actual run time")

	recs := f.repo.Events()
	require.Equal(t, []string{
		events.TypeJobSubmitted, events.TypeAuditActionRecorded,
		events.TypeJobQueued, events.TypeAuditActionRecorded,
		events.TypeJobRunning, events.TypeAuditActionRecorded,
		events.TypeJobCompleted, events.TypeAuditActionRecorded, events.TypeJobMetricsRecorded,
	}, jobEvents(recs, j.ID))
	var seqs []int64
	var metrics events.JobMetricsRecorded
	for _, rec := range recs {
		switch p := rec.Event.Payload.(type) {
		case events.JobMetricsRecorded:
			metrics = p
		case events.AuditActionRecorded:
		default:
			seqs = append(seqs, rec.Event.Sequence)
			require.Equal(t, j.CorrelationID, rec.Event.CorrelationID)
		}
	}
	require.Equal(t, []int64{1, 2, 3, 4}, seqs)
	require.Equal(t, int64(30*time.Minute/time.Millisecond), metrics.RunTimeMS)
	require.Equal(t, cpu.Milliseconds(), *metrics.CPUTimeMS)
	require.Equal(t, rss, *metrics.MaxRSSBytes)
	// seff's figures from the request: CPU time / (run time x CPUs), peak
	// RSS / memory.
	want := c.Spec.Resources
	require.Positive(t, want.Nodes*want.CoresPerNode)
	require.Positive(t, want.MemoryMB)
	require.InDelta(t, 90.0/(30.0*float64(want.Nodes*want.CoresPerNode))*100, *metrics.CPUEfficiencyPercent, 1e-9)
	require.InDelta(t, float64(rss)/(float64(want.Nodes)*float64(want.MemoryMB)*(1<<20))*100, *metrics.MemoryEfficiencyPercent, 1e-9)
	require.True(t, metrics.Final)
	requireEncodable(t, recs)
}

func TestReconcilerMapsSchedulerStatus(t *testing.T) {
	t.Parallel()
	exit1 := int32(1)
	start := time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)
	tests := []struct {
		name       string
		running    bool // move the job to RUNNING first
		report     app.SchedulerStatus
		wantStatus domain.Status
		wantTrail  []domain.Status
		wantCode   string
	}{
		{
			name:       "queued job finished between polls",
			report:     app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", StartTime: start, EndTime: start.Add(time.Minute)},
			wantStatus: domain.StatusCompleted,
			wantTrail:  []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning, domain.StatusCompleted},
		},
		{
			name:       "queued job failed after starting",
			report:     app.SchedulerStatus{Phase: app.PhaseFailed, State: "TIMEOUT", ErrorCode: app.ErrorCodeTimeout, StartTime: start},
			wantStatus: domain.StatusFailed, wantCode: app.ErrorCodeTimeout,
			wantTrail: []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning, domain.StatusFailed},
		},
		{
			name:       "queued job failed without starting",
			report:     app.SchedulerStatus{Phase: app.PhaseFailed, State: "BOOT_FAIL", ErrorCode: app.ErrorCodeBootFail},
			wantStatus: domain.StatusFailed, wantCode: app.ErrorCodeBootFail,
			wantTrail: []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusFailed},
		},
		{
			name:       "running job non-zero exit",
			running:    true,
			report:     app.SchedulerStatus{Phase: app.PhaseFailed, State: "FAILED", ExitCode: &exit1},
			wantStatus: domain.StatusFailed, wantCode: app.ErrorCodeNonZeroExit,
			wantTrail: []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning, domain.StatusFailed},
		},
		{
			name:       "cancelled at the scheduler",
			running:    true,
			report:     app.SchedulerStatus{Phase: app.PhaseCancelled, State: "CANCELLED"},
			wantStatus: domain.StatusCancelled,
			wantTrail:  []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning, domain.StatusCancelled},
		},
		{
			name:       "requeued running job stays running",
			running:    true,
			report:     app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING"},
			wantStatus: domain.StatusRunning,
			wantTrail:  []domain.Status{domain.StatusSubmitted, domain.StatusQueued, domain.StatusRunning},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := context.Background()
			j := f.submit(t, alice, "k")
			f.rec.Pass(ctx)
			ref := f.job(t, j.ID).SchedulerRef.ID
			if tt.running {
				f.sched.Set(ref, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: start})
				f.rec.Pass(ctx)
			}
			f.sched.Set(ref, tt.report)
			f.rec.Pass(ctx)
			f.rec.Pass(ctx)
			got := f.job(t, j.ID)
			require.Equal(t, tt.wantStatus, got.Status)
			require.Equal(t, tt.wantCode, got.ErrorCode)
			var trail []domain.Status
			for i, h := range got.History {
				trail = append(trail, h.To)
				require.Equal(t, int64(i+1), h.Sequence)
				require.NotEmpty(t, h.EventID)
			}
			require.Equal(t, tt.wantTrail, trail)
			requireEncodable(t, f.repo.Events())
		})
	}
}

func TestReconcilerSurvivesSchedulerOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()

	// Submission while the scheduler is down: the job stays SUBMITTED and
	// is submitted once it is back.
	f.sched.SetErrors(nil, errDown)
	j := f.submit(t, alice, "k")
	res := f.rec.Pass(ctx)
	require.Equal(t, 1, res.Errors)
	require.Equal(t, domain.StatusSubmitted, f.job(t, j.ID).Status)
	f.sched.SetErrors(nil, nil)
	require.Equal(t, 1, f.rec.Pass(ctx).Dispatched)
	q := f.job(t, j.ID)
	require.Equal(t, domain.StatusQueued, q.Status)

	// Status outage: errors counted, job kept, then recovered.
	f.sched.SetErrors(errDown, nil)
	for range 3 {
		require.Equal(t, 1, f.rec.Pass(ctx).Errors)
	}
	require.Equal(t, domain.StatusQueued, f.job(t, j.ID).Status)
	f.sched.SetErrors(nil, nil)
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING"})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)

	// Database outage: nothing applied, nothing lost.
	f.repo.SetFailure(errors.New("database down"))
	require.Equal(t, 1, f.rec.Pass(ctx).Errors)
	f.repo.SetFailure(nil)
	require.Equal(t, domain.StatusRunning, f.job(t, j.ID).Status)
	require.EqualValues(t, 7, f.rec.Passes(), "every pass is counted, those with errors too")
}

func TestReconcilerDoesNotSubmitTwiceAfterALostAnswer(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()

	// The scheduler takes the job but its answer is lost (a timeout).
	f.sched.LoseAnswers(fmt.Errorf("submit: %w", app.ErrSchedulerUnavailable))
	j := f.submit(t, alice, "lost-answer")
	require.Equal(t, 1, f.rec.Pass(ctx).Errors)
	require.Equal(t, domain.StatusSubmitted, f.job(t, j.ID).Status)
	require.False(t, f.job(t, j.ID).Dispatch.Uncertain.IsZero(), "the attempt is remembered")

	// The next attempt says so; the scheduler answers with the job it holds.
	f.sched.LoseAnswers(nil)
	require.Equal(t, 1, f.rec.Pass(ctx).Dispatched)
	q := f.job(t, j.ID)
	require.Equal(t, domain.StatusQueued, q.Status)
	require.Len(t, f.sched.Submitted, 1, "one job at the scheduler")
	require.Equal(t, f.sched.Submitted[0].JobID, j.ID)
	require.Equal(t, "1", q.SchedulerRef.ID)
}

func TestReconcilerSubmitRefusedAndLostJobs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()

	f.sched.SetErrors(nil, errors.New("invalid partition"))
	refused := f.submit(t, alice, "refused")
	f.rec.Pass(ctx)
	got := f.job(t, refused.ID)
	require.Equal(t, domain.StatusFailed, got.Status)
	require.Equal(t, app.ErrorCodeSubmit, got.ErrorCode)
	require.Contains(t, got.ErrorMessage, "invalid partition")
	f.sched.SetErrors(nil, nil)

	lost := f.submit(t, alice, "lost")
	f.rec.Pass(ctx)
	ref := f.job(t, lost.ID).SchedulerRef.ID
	f.sched.Forget(ref)
	f.rec.Pass(ctx)
	f.rec.Pass(ctx)
	require.Equal(t, domain.StatusQueued, f.job(t, lost.ID).Status, "kept until unknown LostAfter times in a row")
	f.rec.Pass(ctx)
	got = f.job(t, lost.ID)
	require.Equal(t, domain.StatusFailed, got.Status)
	require.Equal(t, app.ErrorCodeLost, got.ErrorCode)
}

// TestReconcilersRaceExactlyOnce runs several reconcilers (replicas) on the
// same jobs; every transition is still recorded exactly once and every
// job submitted exactly once.
func TestReconcilersRaceExactlyOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	var ids []string
	for i := range 10 {
		ids = append(ids, f.submit(t, alice, "k"+string(rune('a'+i))).ID)
	}
	recs := []*app.Reconciler{f.rec}
	for range 3 {
		r, err := app.NewReconciler(f.app, app.DefaultReconcilerConfig(), slogDiscard())
		require.NoError(t, err)
		recs = append(recs, r)
	}
	passAll := func() {
		var wg sync.WaitGroup
		for _, r := range recs {
			wg.Go(func() { r.Pass(ctx) })
		}
		wg.Wait()
	}
	passAll()
	passAll()
	require.Len(t, f.sched.Submitted, 10, "each job submitted once")
	exit := int32(0)
	for _, id := range ids {
		f.sched.Set(f.job(t, id).SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit})
	}
	passAll()
	passAll()
	all := f.repo.Events()
	for _, id := range ids {
		require.Equal(t, []string{
			events.TypeJobSubmitted, events.TypeAuditActionRecorded,
			events.TypeJobQueued, events.TypeAuditActionRecorded,
			events.TypeJobRunning, events.TypeAuditActionRecorded,
			events.TypeJobCompleted, events.TypeAuditActionRecorded, events.TypeJobMetricsRecorded,
		}, jobEvents(all, id))
	}
}

func TestReconcilerRunStopsWithContext(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.rec.Run(ctx) }()
	j := f.submit(t, alice, "k") // kicks the reconciler
	require.Eventually(t, func() bool { return f.job(t, j.ID).Status == domain.StatusQueued }, 5*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

func TestCancelDuringDispatchStopsSchedulerJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	j := f.submit(t, alice, "k")
	hook := &cancellingScheduler{FakeScheduler: f.sched, onSubmit: func() {
		_, err := f.app.CancelJob(ctx, alice, j.ID, "too slow")
		require.NoError(t, err)
	}}
	a, rec := rebuild(t, f, hook)
	_ = a
	rec.Pass(ctx)
	got := f.job(t, j.ID)
	require.Equal(t, domain.StatusCancelled, got.Status)
	require.Len(t, f.sched.Cancelled, 1, "the job that reached the scheduler is cancelled there")
}

func TestReconcilerSamplesRunningJobs(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	j := f.submit(t, alice, "sampled")
	require.Equal(t, 1, f.rec.Pass(ctx).Dispatched)
	q := f.job(t, j.ID)
	start := f.clock.Now()
	cpu := 20 * time.Second
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: start, CPUTime: &cpu})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)

	samples := func() []events.Event {
		var out []events.Event
		for _, rec := range f.repo.Events() {
			if p, ok := rec.Event.Payload.(events.JobMetricsRecorded); ok && p.JobID == j.ID {
				out = append(out, rec.Event)
			}
		}
		return out
	}
	f.clock.advance(10 * time.Second)
	require.Zero(t, f.rec.Pass(ctx).Samples, "not due yet")
	f.clock.advance(25 * time.Second)
	require.Equal(t, 1, f.rec.Pass(ctx).Samples, "35 s after the start")
	require.Zero(t, f.rec.Pass(ctx).Samples, "one per interval")
	f.clock.advance(30 * time.Second)
	require.Equal(t, 1, f.rec.Pass(ctx).Samples)

	got := samples()
	require.Len(t, got, 2)
	first := got[0].Payload.(events.JobMetricsRecorded)
	require.False(t, first.Final)
	require.InDelta(t, 35_000, first.RunTimeMS, 100)
	require.Positive(t, first.NodeHours)
	require.Nil(t, first.ExitCode)
	require.Equal(t, cpu.Milliseconds(), *first.CPUTimeMS)
	require.EqualValues(t, 3, got[0].Sequence, "the RUNNING transition's sequence")
	require.Equal(t, j.CorrelationID, got[0].CorrelationID)
	require.Greater(t, got[1].Payload.(events.JobMetricsRecorded).RunTimeMS, first.RunTimeMS)
	require.Equal(t, domain.StatusRunning, f.job(t, j.ID).Status, "a sample is not a transition")

	// The final sample follows, with the terminal transition's sequence.
	exit := int32(0)
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit,
		StartTime: start, EndTime: f.clock.Now()})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)
	got = samples()
	require.Len(t, got, 3)
	require.True(t, got[2].Payload.(events.JobMetricsRecorded).Final)
	require.EqualValues(t, 4, got[2].Sequence)
	requireEncodable(t, f.repo.Events())
}

func TestReconcilerSampleIntervalZeroSendsNone(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rcfg := app.DefaultReconcilerConfig()
	rcfg.SampleInterval = 0
	rec, err := app.NewReconciler(f.app, rcfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx := context.Background()
	j := f.submit(t, alice, "unsampled")
	require.Equal(t, 1, rec.Pass(ctx).Dispatched)
	f.sched.Set(f.job(t, j.ID).SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: f.clock.Now()})
	require.Equal(t, 1, rec.Pass(ctx).Applied)
	f.clock.advance(time.Hour)
	require.Zero(t, rec.Pass(ctx).Samples)
	rcfg.SampleInterval = -time.Second
	_, err = app.NewReconciler(f.app, rcfg, slog.New(slog.DiscardHandler))
	require.ErrorContains(t, err, "sample interval must not be negative")
}

func TestReconcilerRecordsSchedulerDetailOfWaitingJob(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	j := f.submit(t, alice, "k")
	require.Equal(t, 1, f.rec.Pass(ctx).Dispatched)
	q := f.job(t, j.ID)
	require.Equal(t, domain.StatusQueued, q.Status)
	require.Empty(t, q.SchedulerDetail)
	events := len(jobEvents(f.repo.Events(), j.ID))

	const limit = "QOSMaxJobsPerUserLimit: you have as many jobs running as your QOS allows; it starts when one of them ends"
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING", Reason: limit})
	res := f.rec.Pass(ctx)
	require.Zero(t, res.Applied, "a reason is no transition")
	require.Zero(t, res.Errors)
	w := f.job(t, j.ID)
	require.Equal(t, domain.StatusQueued, w.Status)
	require.Equal(t, limit, w.SchedulerDetail)
	require.Equal(t, q.Sequence, w.Sequence)
	require.Greater(t, w.Version, q.Version)
	require.Len(t, jobEvents(f.repo.Events(), j.ID), events, "a reason emits no event")

	// The same reason again writes nothing; a new one replaces it.
	f.rec.Pass(ctx)
	require.Equal(t, w.Version, f.job(t, j.ID).Version)
	const prio = "Priority: jobs of higher priority wait before it; nothing to do"
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING", Reason: prio})
	f.rec.Pass(ctx)
	require.Equal(t, prio, f.job(t, j.ID).SchedulerDetail)

	// It clears when the job runs.
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING",
		StartTime: time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)})
	require.Equal(t, 1, f.rec.Pass(ctx).Applied)
	r := f.job(t, j.ID)
	require.Equal(t, domain.StatusRunning, r.Status)
	require.Empty(t, r.SchedulerDetail)

	// A requeued RUNNING job stays RUNNING and keeps no detail.
	f.sched.Set(q.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseQueued, State: "PENDING", Reason: limit})
	f.rec.Pass(ctx)
	require.Empty(t, f.job(t, j.ID).SchedulerDetail)
}

// Jobs waiting at the scheduler do not hide new submissions: with a batch
// of 5 and 5 older jobs still QUEUED there, the next pass dispatches the 3
// jobs submitted since. (With one list of every active job, oldest first,
// the queued ones fill the batch and the new ones wait until they end.)
func TestReconcilerDispatchesNewJobsBehindAQueuedBacklog(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := app.DefaultReconcilerConfig()
	cfg.Batch = 5
	rec, err := app.NewReconciler(f.app, cfg, slogDiscard())
	require.NoError(t, err)
	ctx := context.Background()
	for i := range 5 {
		f.submit(t, alice, fmt.Sprintf("old-%d", i))
	}
	require.Equal(t, 5, rec.Pass(ctx).Dispatched)
	f.clock.advance(time.Minute)
	var fresh []*domain.Job
	for i := range 3 {
		fresh = append(fresh, f.submit(t, alice, fmt.Sprintf("new-%d", i)))
	}
	res := rec.Pass(ctx)
	require.Equal(t, 3, res.Dispatched, "%+v", res)
	for _, j := range fresh {
		require.Equal(t, domain.StatusQueued, f.job(t, j.ID).Status)
	}
	require.Len(t, f.sched.Submitted, 8)
}

// A backlog larger than one pass is worked off pass after pass, not one
// pass per Interval: with an hour's interval and a batch of 5, 40 jobs
// still reach the scheduler at once.
func TestReconcilerWorksOffABacklogWithoutWaiting(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cfg := app.DefaultReconcilerConfig()
	cfg.Interval, cfg.MaxInterval, cfg.Jitter, cfg.Batch = time.Hour, time.Hour, 0, 5
	rec, err := app.NewReconciler(f.app, cfg, slogDiscard())
	require.NoError(t, err)
	const n = 40
	for i := range n {
		f.submit(t, alice, fmt.Sprintf("backlog-%d", i))
	}
	runReconciler(t, rec)
	require.Eventually(t, func() bool {
		jobs, err := f.repo.ListActive(context.Background(), 1000)
		if err != nil {
			return false
		}
		for _, j := range jobs {
			if j.Status == domain.StatusSubmitted {
				return false
			}
		}
		return len(jobs) == n
	}, 10*time.Second, 10*time.Millisecond, "every job dispatched within one Interval")
}
