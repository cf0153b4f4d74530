package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// cancellingScheduler runs onSubmit after a successful Submit, to interleave
// a user's cancel with a dispatch.
type cancellingScheduler struct {
	*apptest.FakeScheduler
	onSubmit func()
}

func (s *cancellingScheduler) Submit(ctx context.Context, req app.SubmitRequest) (app.SchedulerRef, error) {
	ref, err := s.FakeScheduler.Submit(ctx, req)
	if err == nil && s.onSubmit != nil {
		s.onSubmit()
	}
	return ref, err
}

// rebuild makes a second App and Reconciler over f's repository with
// another scheduler.
func rebuild(t *testing.T, f *fixture, s app.Scheduler) (*app.App, *app.Reconciler) {
	t.Helper()
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	a, err := app.New(cfg, app.Deps{Repo: f.repo, Scheduler: s, Catalogue: domain.DefaultCatalogue(), Logger: slogDiscard(), Now: f.clock.Now})
	require.NoError(t, err)
	r, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), slogDiscard())
	require.NoError(t, err)
	return a, r
}

var errDown = fmt.Errorf("connect: %w", app.ErrSchedulerUnavailable)

// runReconciler runs rec until the test ends, then checks that Run
// returned without an error. It returns Run's context.
func runReconciler(t *testing.T, rec *app.Reconciler) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return ctx
}
