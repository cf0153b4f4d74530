package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func TestReconcilerPollsInBulk(t *testing.T) {
	t.Parallel()
	repo, sched := apptest.NewMemRepo(), apptest.NewBulkFakeScheduler()
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := app.New(cfg, app.Deps{Repo: repo, Scheduler: sched, Catalogue: domain.DefaultCatalogue(), Logger: logger, Now: clk.Now})
	require.NoError(t, err)
	rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), logger)
	require.NoError(t, err)
	ctx := context.Background()

	const n = 50
	ids := make([]string, n)
	for i := range n {
		j, _, err := a.SubmitJob(ctx, alice, app.SubmitInput{IdempotencyKey: fmt.Sprintf("k%d", i), Spec: spec()})
		require.NoError(t, err)
		ids[i] = j.ID
	}
	res := rec.Pass(ctx)
	require.Equal(t, n, res.Dispatched)
	bulk, single := sched.Counts()
	require.Zero(t, single)

	// A pass over 50 queued jobs: one bulk request, none per job.
	rec.Pass(ctx)
	b2, s2 := sched.Counts()
	require.Equal(t, bulk+1, b2, "one StatusMany per pass")
	require.Equal(t, single, s2, "no Status per job")

	// The bulk answer's states are applied.
	first, err := a.GetJob(ctx, admin, ids[0])
	require.NoError(t, err)
	sched.Set(first.SchedulerRef.ID, app.SchedulerStatus{Phase: app.PhaseRunning, State: "RUNNING", StartTime: clk.Now()})
	rec.Pass(ctx)
	got, err := a.GetJob(ctx, admin, ids[0])
	require.NoError(t, err)
	require.Equal(t, domain.StatusRunning, got.Status)

	// A job that drops out of the bulk answer is looked up by id, once per pass.
	second, err := a.GetJob(ctx, admin, ids[1])
	require.NoError(t, err)
	sched.Hide(second.SchedulerRef.ID)
	_, before := sched.Counts()
	rec.Pass(ctx)
	_, after := sched.Counts()
	require.Equal(t, before+1, after, "the missing job is read by id")
	require.Equal(t, domain.StatusQueued, must(a.GetJob(ctx, admin, ids[1])).Status, "still known by id: kept")

	// Unknown by id as well: declared lost after LostAfter passes, not before.
	sched.Forget(second.SchedulerRef.ID)
	for range app.DefaultLostAfter - 1 {
		rec.Pass(ctx)
	}
	require.Equal(t, domain.StatusQueued, must(a.GetJob(ctx, admin, ids[1])).Status)
	rec.Pass(ctx)
	lost := must(a.GetJob(ctx, admin, ids[1]))
	require.Equal(t, domain.StatusFailed, lost.Status)
	require.Equal(t, app.ErrorCodeLost, lost.ErrorCode)

	// A bulk request that fails keeps every job and sends nothing per job.
	sched.SetErrors(errors.Join(app.ErrSchedulerUnavailable, errors.New("down")), nil)
	_, before = sched.Counts()
	res = rec.Pass(ctx)
	_, after = sched.Counts()
	require.Equal(t, n-1, res.Errors, "every polled job is retried next pass")
	require.Equal(t, before, after)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
