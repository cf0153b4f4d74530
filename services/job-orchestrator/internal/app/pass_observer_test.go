package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// The pass observer is told every pass, with the result the pass returned
// and a duration that covers it.
func TestReconcilerPassObserver(t *testing.T) {
	t.Parallel()
	type seen struct {
		d   time.Duration
		res app.PassResult
	}
	var passes []seen
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	clk := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	a, err := app.New(cfg, app.Deps{Repo: apptest.NewMemRepo(), Scheduler: apptest.NewFakeScheduler(),
		Catalogue: domain.DefaultCatalogue(), Logger: slogDiscard(), Now: clk.Now})
	require.NoError(t, err)
	rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), slogDiscard(),
		app.WithPassObserver(func(d time.Duration, res app.PassResult) { passes = append(passes, seen{d, res}) }))
	require.NoError(t, err)
	const n = 7
	for i := range n {
		_, _, err := a.SubmitJob(context.Background(), alice, app.SubmitInput{IdempotencyKey: fmt.Sprintf("k%d", i), Spec: spec()})
		require.NoError(t, err)
	}

	begun := time.Now()
	first := rec.Pass(context.Background())
	took := time.Since(begun)
	second := rec.Pass(context.Background())

	require.Len(t, passes, 2, "one observation per pass")
	require.Equal(t, n, first.Dispatched)
	require.Equal(t, first, passes[0].res)
	require.Equal(t, second, passes[1].res)
	require.Positive(t, passes[0].d)
	require.LessOrEqual(t, passes[0].d, took, "the observed duration is the pass's own")
}
