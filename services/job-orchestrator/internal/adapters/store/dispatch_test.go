package store_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// testClaimSubmitted: one statement claims a batch of SUBMITTED jobs,
// oldest first; replicas claiming at once get disjoint jobs; a claim is
// leased, taken over after its lease as uncertain, and advances the
// version so that the replica that lost it cannot record its outcome.
func testClaimSubmitted(t *testing.T, db *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	const n = 40
	var ids []string
	for i := range n {
		j := newJob(fmt.Sprintf("job-%02d", i), "alice", fmt.Sprintf("k-%02d", i), domain.SystemFrontera, t0)
		j.UpdatedAt = t0.Add(time.Duration(n-i) * time.Millisecond) // the last created is the oldest
		require.NoError(t, s.Create(ctx, j, nil))
		ids = append(ids, j.ID)
	}
	slices.Reverse(ids) // oldest UpdatedAt first
	for _, st := range []domain.Status{domain.StatusQueued, domain.StatusRunning, domain.StatusCancelled} {
		j := newJob("other-"+string(st), "alice", "k-"+string(st), domain.SystemFrontera, t0)
		j.Status, j.UpdatedAt = st, t0.Add(-time.Hour)
		require.NoError(t, s.Create(ctx, j, nil))
	}
	const lease = 15 * time.Second
	now := t0.Add(time.Minute)
	unclaimed := func() int64 {
		return count(t, db, "SELECT COUNT(*) FROM jobs WHERE dispatch_token IS NULL AND version = 1")
	}

	// Bad input is refused and claims nothing.
	for _, bad := range []struct {
		token string
		lease time.Duration
		limit int
	}{{"", lease, 5}, {"r", lease, 0}, {"r", 0, 5}} {
		_, err := s.ClaimSubmitted(ctx, bad.token, now, bad.lease, bad.limit)
		require.Error(t, err)
	}
	require.EqualValues(t, n+3, unclaimed())

	// One statement claims the oldest five.
	first, err := s.ClaimSubmitted(ctx, "r1", now, lease, 5)
	require.NoError(t, err)
	require.Equal(t, ids[:5], jobIDs(first))
	for _, j := range first {
		require.Equal(t, domain.StatusSubmitted, j.Status)
		require.Equal(t, domain.DispatchClaim{Token: "r1", At: now}, j.Dispatch)
		require.EqualValues(t, 2, j.Version)
		got, err := s.Get(ctx, j.ID)
		require.NoError(t, err)
		require.Equal(t, j, got, "the claim is stored as returned")
	}
	require.EqualValues(t, n+3-5, unclaimed())

	// Replicas claiming at once never get the same job.
	const replicas = 8
	got := make([][]*domain.Job, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Go(func() {
			got[i], errs[i] = s.ClaimSubmitted(ctx, fmt.Sprintf("r%d", i+2), now, lease, 5)
		})
	}
	wg.Wait()
	seen := map[string]string{}
	for i, jobs := range got {
		require.NoError(t, errs[i])
		for _, j := range jobs {
			require.Empty(t, seen[j.ID], "job %s claimed twice", j.ID)
			seen[j.ID] = j.Dispatch.Token
			require.Equal(t, fmt.Sprintf("r%d", i+2), j.Dispatch.Token)
		}
	}
	require.Len(t, seen, n-5, "every SUBMITTED job claimed once")
	for _, id := range ids[:5] {
		require.NotContains(t, seen, id)
	}

	// While the leases run nobody gets them; QUEUED, RUNNING and ended
	// jobs are never claimed.
	none, err := s.ClaimSubmitted(ctx, "r9", now.Add(lease-time.Nanosecond), lease, 100)
	require.NoError(t, err)
	require.Empty(t, none)

	// A job released after a failed attempt keeps its uncertain mark and
	// is claimable at once.
	released, err := s.Transition(ctx, ids[0], 2, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		cur.Dispatch = domain.DispatchClaim{Uncertain: cur.Dispatch.At}
		return nil, nil
	})
	require.NoError(t, err)
	require.Equal(t, domain.DispatchClaim{Uncertain: now}, released.Dispatch)
	again, err := s.ClaimSubmitted(ctx, "r10", now.Add(time.Second), lease, 100)
	require.NoError(t, err)
	require.Equal(t, []string{ids[0]}, jobIDs(again))
	require.Equal(t, domain.DispatchClaim{Token: "r10", At: now.Add(time.Second), Uncertain: now}, again[0].Dispatch)
	require.EqualValues(t, 4, again[0].Version)

	// After the lease the claims of a dead replica are taken over, each as
	// uncertain since the claim it replaces, oldest first.
	later := now.Add(lease)
	taken, err := s.ClaimSubmitted(ctx, "r11", later, lease, 100)
	require.NoError(t, err)
	require.Equal(t, ids[1:], jobIDs(taken))
	for _, j := range taken {
		require.Equal(t, domain.DispatchClaim{Token: "r11", At: later, Uncertain: now}, j.Dispatch)
		require.EqualValues(t, 3, j.Version)
	}

	// The replica that lost a claim cannot record its outcome.
	_, err = s.Transition(ctx, ids[1], 2, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		_, err := cur.MarkQueued(domain.SchedulerRef{Scheduler: "local", ID: "1"}, later)
		return nil, err
	})
	require.ErrorIs(t, err, app.ErrVersionConflict)
	queued, err := s.Transition(ctx, ids[1], 3, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		_, err := cur.MarkQueued(domain.SchedulerRef{Scheduler: "local", ID: "1"}, later)
		return nil, err
	})
	require.NoError(t, err)
	require.Equal(t, domain.DispatchClaim{}, queued.Dispatch, "a queued job holds no claim")
	require.EqualValues(t, 1, count(t, db, "SELECT COUNT(*) FROM jobs WHERE id = ? AND dispatch_token IS NULL AND dispatch_at IS NULL AND dispatch_uncertain IS NULL", ids[1]))
	none, err = s.ClaimSubmitted(ctx, "r12", later.Add(time.Hour), lease, 100)
	require.NoError(t, err)
	require.NotContains(t, jobIDs(none), ids[1])
	require.Len(t, none, n-1)
}

func jobIDs(jobs []*domain.Job) []string {
	out := []string{}
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

// testListActiveVersions: ListActiveVersions lists what ListActive lists,
// in its order, with each job's version; GetMany reads jobs as Get does.
func testListActiveVersions(t *testing.T, _ *sqlstore.DB, s *store.Store) {
	ctx := context.Background()
	for i, st := range []domain.Status{domain.StatusRunning, domain.StatusCompleted, domain.StatusSubmitted,
		domain.StatusQueued, domain.StatusQueued, domain.StatusCancelled, domain.StatusRunning} {
		j := newJob(fmt.Sprintf("j%d", i), "alice", fmt.Sprintf("k%d", i), domain.SystemFrontera, t0)
		j.Status, j.UpdatedAt = st, t0.Add(time.Duration(7-i)*time.Second)
		require.NoError(t, s.Create(ctx, j, nil))
	}
	_, err := s.Transition(ctx, "j4", 1, func(cur *domain.Job) ([]app.OutboxRecord, error) {
		cur.SchedulerDetail = "waits"
		return nil, nil
	})
	require.NoError(t, err)
	for _, statuses := range [][]domain.Status{nil, {domain.StatusQueued, domain.StatusRunning}, {domain.StatusSubmitted}} {
		for _, limit := range []int{1, 3, 10} {
			jobs, err := s.ListActive(ctx, limit, statuses...)
			require.NoError(t, err)
			vs, err := s.ListActiveVersions(ctx, limit, statuses...)
			require.NoError(t, err)
			require.Len(t, vs, len(jobs))
			for i, j := range jobs {
				require.Equal(t, app.JobVersion{ID: j.ID, Version: j.Version}, vs[i])
			}
		}
	}
	vs, err := s.ListActiveVersions(ctx, 10, domain.StatusQueued)
	require.NoError(t, err)
	require.Equal(t, []app.JobVersion{{ID: "j4", Version: 2}, {ID: "j3", Version: 1}}, vs)
	_, err = s.ListActiveVersions(ctx, 0)
	require.Error(t, err)
	_, err = s.ListActiveVersions(ctx, 10, domain.StatusFailed)
	require.ErrorContains(t, err, "not an active status")

	got, err := s.GetMany(ctx, []string{"j4", "nope", "j1"})
	require.NoError(t, err)
	require.Len(t, got, 2, "unknown ids are left out")
	for _, j := range got {
		want, err := s.Get(ctx, j.ID)
		require.NoError(t, err)
		require.Equal(t, want, j)
	}
	none, err := s.GetMany(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, none)
	// More ids than one query takes.
	ids := make([]string, 1200)
	for i := range ids {
		ids[i] = fmt.Sprintf("missing-%d", i)
	}
	ids[1100] = "j0"
	got, err = s.GetMany(ctx, ids)
	require.NoError(t, err)
	require.Equal(t, []string{"j0"}, jobIDs(got))
}
