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
			all := map[string]string{"dialect": string(db.Dialect())}
			only := func(writes string) map[string]string {
				return map[string]string{"dialect": string(db.Dialect()), "writes": writes}
			}

			commits, _ := histogram(t, reg, store.MetricCommitSeconds, all)
			claims, _ := histogram(t, reg, store.MetricClaimSeconds, all)
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
			commits, held := histogram(t, reg, store.MetricCommitSeconds, only("creates"))
			batches, writes := histogram(t, reg, store.MetricCommitWrites, only("creates"))
			require.GreaterOrEqual(t, commits, uint64(1))
			require.LessOrEqual(t, commits, uint64(n))
			require.Equal(t, commits, batches, "one writes sample per commit")
			require.EqualValues(t, n, writes, "the commits carried the %d jobs, once each", n)
			total, _ := histogram(t, reg, store.MetricCommitSeconds, all)
			require.Equal(t, commits, total, "no commit of another kind")
			longest := gauge(t, reg, store.MetricCommitMaxSeconds, only("creates"))
			require.Positive(t, held)
			require.Positive(t, longest)
			require.GreaterOrEqual(t, longest, held/float64(commits), "the longest commit is at least the mean")
			require.LessOrEqual(t, longest, held)
			require.Zero(t, gauge(t, reg, store.MetricCommitMaxSeconds, only("transitions")))

			// A transition is a write of a commit of transitions.
			_, err := s.Transition(ctx, "job-00", 1, func(j *domain.Job) ([]app.OutboxRecord, error) {
				j.Spec.Name = "renamed"
				return nil, nil
			})
			require.NoError(t, err)
			after, _ := histogram(t, reg, store.MetricCommitSeconds, only("transitions"))
			_, writes = histogram(t, reg, store.MetricCommitWrites, only("transitions"))
			require.EqualValues(t, 1, after)
			require.EqualValues(t, 1, writes)
			require.Positive(t, gauge(t, reg, store.MetricCommitMaxSeconds, only("transitions")))

			// Refused claims are not timed; a claim statement is, once.
			_, err = s.ClaimSubmitted(ctx, "", t0, time.Second, 5)
			require.Error(t, err)
			claims, _ = histogram(t, reg, store.MetricClaimSeconds, all)
			require.Zero(t, claims)
			got, err := s.ClaimSubmitted(ctx, "r1", t0.Add(time.Minute), 15*time.Second, 10)
			require.NoError(t, err)
			require.Len(t, got, 10)
			claims, claimHeld := histogram(t, reg, store.MetricClaimSeconds, all)
			require.EqualValues(t, 1, claims)
			require.Positive(t, claimHeld)
			require.InDelta(t, claimHeld, gauge(t, reg, store.MetricClaimMaxSeconds, all), 1e-9,
				"after one claim the longest is that claim")

			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}

// series returns the series of family name in reg whose labels include
// want.
func series(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var out []*dto.Metric
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue metrics
				}
			}
			out = append(out, m)
		}
	}
	require.NotEmpty(t, out, "%s%v", name, want)
	return out
}

// histogram returns the sample count and sum of the histogram series of
// name with labels, added up.
func histogram(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (uint64, float64) {
	t.Helper()
	var (
		n   uint64
		sum float64
	)
	for _, m := range series(t, reg, name, labels) {
		h := m.GetHistogram()
		require.NotNil(t, h, "%s is a histogram", name)
		n += h.GetSampleCount()
		sum += h.GetSampleSum()
	}
	return n, sum
}

// gauge returns the largest value of the gauge series of name with labels.
func gauge(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	var most float64
	for _, m := range series(t, reg, name, labels) {
		require.NotNil(t, m.GetGauge(), "%s is a gauge", name)
		most = max(most, m.GetGauge().GetValue())
	}
	return most
}
