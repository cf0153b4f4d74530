package service

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// A reconciler wired as the service wires it, over the SQLite store,
// exports each pass, its claim and the commits of its writes.
func TestReconcilerMetricsOnSQLite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	db := sqlstoretest.OpenURL(t, "sqlite://"+t.TempDir()+"/orchestrator.db")
	require.NoError(t, store.Migrate(ctx, db))
	codec, err := events.NewCodec()
	require.NoError(t, err)
	st, err := store.New(db, codec, store.Config{Registerer: reg})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	a, err := app.New(cfg, app.Deps{Repo: st, Scheduler: apptest.NewFakeScheduler(), Catalogue: domain.DefaultCatalogue(), Logger: log})
	require.NoError(t, err)
	observe, err := passObserver(reg)
	require.NoError(t, err)
	rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), log, observe)
	require.NoError(t, err)

	const n = 5
	for i := range n {
		spec := domain.Spec{Name: "calibrate", Agent: domain.AgentAlphaCal, DatasetID: "VLASS2.1.T10t01",
			System: domain.SystemFrontera, Partition: "normal", Allocation: "AST21001",
			Resources: domain.Resources{Nodes: 1, CoresPerNode: 4, Walltime: time.Hour}}
		_, _, err := a.SubmitJob(ctx, app.Actor{UserID: "alice"}, app.SubmitInput{IdempotencyKey: fmt.Sprintf("k%d", i), Spec: spec})
		require.NoError(t, err)
	}
	_, writesBefore := histogram(t, reg, store.MetricCommitWrites)
	require.EqualValues(t, n, writesBefore, "each submission was a write of a commit")

	res := rec.Pass(ctx)
	require.Equal(t, n, res.Dispatched)

	passes, passSum := histogram(t, reg, MetricPassSeconds)
	require.EqualValues(t, 1, passes)
	require.Positive(t, passSum)
	require.InDelta(t, passSum, gauge(t, reg, MetricPassMaxSeconds), 1e-9, "after one pass the longest is that pass")
	claims, claimSum := histogram(t, reg, store.MetricClaimSeconds)
	require.EqualValues(t, 1, claims, "one claim statement per pass")
	require.Positive(t, claimSum)
	require.Less(t, claimSum, passSum, "the claim is part of the pass")
	_, writes := histogram(t, reg, store.MetricCommitWrites)
	require.EqualValues(t, n+res.Applied, writes, "the pass's transitions were writes of commits")
	require.Positive(t, res.Applied)

	problems, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// histogram returns the sample count and sum of the histogram name, its
// series added up.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (uint64, float64) {
	t.Helper()
	var (
		n   uint64
		sum float64
	)
	for _, m := range family(t, reg, name) {
		h := m.GetHistogram()
		require.NotNil(t, h, name)
		n += h.GetSampleCount()
		sum += h.GetSampleSum()
	}
	return n, sum
}

// gauge returns the value of the gauge name, which has one series.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	ms := family(t, reg, name)
	require.Len(t, ms, 1, name)
	require.NotNil(t, ms[0].GetGauge(), name)
	return ms[0].GetGauge().GetValue()
}

func family(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	require.Failf(t, "metric not found", "%s", name)
	return nil
}
