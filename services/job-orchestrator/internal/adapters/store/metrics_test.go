package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// The store records every group-commit transaction (with the writes it
// carried) and every dispatch claim, and the longest of each.
func TestStoreMetrics(t *testing.T) {
	t.Parallel()
	for _, d := range sqlstoretest.Databases(t) {
		t.Run(d.Name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			db := d.Open(t)
			s := newStore(t, db, store.Config{Registerer: reg})
			ctx := context.Background()
			dialect := string(db.Dialect())

			commits, _ := histogram(t, reg, store.MetricCommitSeconds, dialect)
			claims, _ := histogram(t, reg, store.MetricClaimSeconds, dialect)
			require.Zero(t, commits)
			require.Zero(t, claims)

			// A burst of Creates: each in some commit, the commits carry
			// exactly the jobs, and each was timed.
			const n = 40
			errs := burst(n, func(i int) error {
				return s.Create(ctx, newJob(fmt.Sprintf("job-%02d", i), "alice", fmt.Sprintf("k-%02d", i), domain.SystemFrontera, t0), nil)
			})
			for _, err := range errs {
				require.NoError(t, err)
			}
			commits, held := histogram(t, reg, store.MetricCommitSeconds, dialect)
			batches, writes := histogram(t, reg, store.MetricCommitWrites, dialect)
			require.GreaterOrEqual(t, commits, uint64(1))
			require.LessOrEqual(t, commits, uint64(n))
			require.Equal(t, commits, batches, "one writes sample per commit")
			require.EqualValues(t, n, writes, "the commits carried the %d jobs, once each", n)
			longest := gauge(t, reg, store.MetricCommitMaxSeconds, dialect)
			require.Positive(t, held)
			require.Positive(t, longest)
			require.GreaterOrEqual(t, longest, held/float64(commits), "the longest commit is at least the mean")
			require.LessOrEqual(t, longest, held)

			// A transition is a write of its own commit.
			_, err := s.Transition(ctx, "job-00", 1, func(j *domain.Job) ([]app.OutboxRecord, error) {
				j.Spec.Name = "renamed"
				return nil, nil
			})
			require.NoError(t, err)
			after, _ := histogram(t, reg, store.MetricCommitSeconds, dialect)
			_, writes = histogram(t, reg, store.MetricCommitWrites, dialect)
			require.Equal(t, commits+1, after)
			require.EqualValues(t, n+1, writes)

			// Refused claims are not timed; a claim statement is, once.
			_, err = s.ClaimSubmitted(ctx, "", t0, time.Second, 5)
			require.Error(t, err)
			claims, _ = histogram(t, reg, store.MetricClaimSeconds, dialect)
			require.Zero(t, claims)
			got, err := s.ClaimSubmitted(ctx, "r1", t0.Add(time.Minute), 15*time.Second, 10)
			require.NoError(t, err)
			require.Len(t, got, 10)
			claims, claimHeld := histogram(t, reg, store.MetricClaimSeconds, dialect)
			require.EqualValues(t, 1, claims)
			require.Positive(t, claimHeld)
			require.InDelta(t, claimHeld, gauge(t, reg, store.MetricClaimMaxSeconds, dialect), 1e-9,
				"after one claim the longest is that claim")

			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}

// metric returns the series of family name with label dialect in reg.
func metric(t *testing.T, reg *prometheus.Registry, name, dialect string) *dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "dialect" && l.GetValue() == dialect {
					return m
				}
			}
		}
	}
	require.Failf(t, "metric not found", "%s{dialect=%q}", name, dialect)
	return nil
}

// histogram returns the sample count and sum of a histogram series.
func histogram(t *testing.T, reg *prometheus.Registry, name, dialect string) (uint64, float64) {
	t.Helper()
	h := metric(t, reg, name, dialect).GetHistogram()
	require.NotNil(t, h, "%s is a histogram", name)
	return h.GetSampleCount(), h.GetSampleSum()
}

func gauge(t *testing.T, reg *prometheus.Registry, name, dialect string) float64 {
	t.Helper()
	g := metric(t, reg, name, dialect).GetGauge()
	require.NotNil(t, g, "%s is a gauge", name)
	return g.GetValue()
}
