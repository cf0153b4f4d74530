package adapters_test

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/domain"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newRepo(t *testing.T, db *sqlstore.DB) *adapters.JobRepository {
	t.Helper()
	require.NoError(t, adapters.Migrate(context.Background(), db))
	require.NoError(t, adapters.Migrate(context.Background(), db), "migrating twice is a no-op")
	return adapters.NewJobRepository(db)
}

// applyAll applies evs in batches of size, one transaction per batch,
// prefetching the batch's jobs when prefetch is set.
func applyAll(t *testing.T, db *sqlstore.DB, repo *adapters.JobRepository, evs []events.Event, size int, prefetch bool) {
	t.Helper()
	ctx := context.Background()
	for chunk := range slices.Chunk(evs, size) {
		var ids []string
		if prefetch {
			for _, ev := range chunk {
				ids = append(ids, domain.JobID(ev))
			}
		}
		s := repo.NewSession(ids...)
		require.NoError(t, db.InTx(ctx, func(tx *sql.Tx) error {
			for _, ev := range chunk {
				if err := s.Apply(ctx, tx, ev); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

func TestJobRepositoryContract(t *testing.T) {
	plans := testgen.Plans(21, 400, base)
	evs, err := testgen.Stream(plans)
	require.NoError(t, err)
	want := map[string]*domain.Job{}
	for _, ev := range evs {
		id := domain.JobID(ev)
		if want[id] == nil {
			want[id] = domain.NewJob(id)
		}
		want[id].Apply(ev)
	}

	sqlstoretest.Run(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		t.Run("in order and shuffled with duplicates give the same records", func(t *testing.T) {
			inOrder := newRepo(t, db)
			applyAll(t, db, inOrder, evs, 97, true)
			got, err := inOrder.Jobs(ctx)
			require.NoError(t, err)
			require.Len(t, got, len(want))
			for _, j := range got {
				require.Equal(t, want[j.ID], j)
			}

			shuffled := append(slices.Clone(evs), evs[:500]...)
			r := rand.New(rand.NewPCG(3, 4))
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			applyAll(t, db, inOrder, shuffled, 333, false)
			again, err := inOrder.Jobs(ctx)
			require.NoError(t, err)
			require.Equal(t, got, again, "re-applying the stream in any order changes nothing")
		})

		t.Run("queries filter by window and attributes", func(t *testing.T) {
			repo := adapters.NewJobRepository(db)
			from, to := base.Add(100*time.Second), base.Add(200*time.Second)
			for _, tt := range []struct {
				name string
				flt  domain.Filter
				keep func(testgen.Plan) bool
			}{
				{name: "everything", keep: func(testgen.Plan) bool { return true }},
				{name: "window", flt: domain.Filter{FromUS: from.UnixMicro(), ToUS: to.UnixMicro()},
					keep: func(p testgen.Plan) bool { return !p.SubmittedAt.Before(from) && p.SubmittedAt.Before(to) }},
				{name: "system and agent", flt: domain.Filter{System: "VISTA", Agent: "AlphaCal"},
					keep: func(p testgen.Plan) bool { return p.System == "VISTA" && p.Agent == "AlphaCal" }},
				{name: "user", flt: domain.Filter{UserID: "user-3"}, keep: func(p testgen.Plan) bool { return p.UserID == "user-3" }},
				{name: "job", flt: domain.Filter{JobID: plans[5].JobID}, keep: func(p testgen.Plan) bool { return p.JobID == plans[5].JobID }},
			} {
				t.Run(tt.name, func(t *testing.T) {
					var s domain.Stats
					require.NoError(t, repo.Each(ctx, tt.flt, func(r domain.Row) error {
						s.AddFacts(r.Facts)
						return nil
					}))
					exp := testgen.Expect(plans, tt.keep)
					require.Equal(t, exp.Submitted, s.Submitted)
					require.Equal(t, exp.Completed, s.Completed)
					require.Equal(t, exp.Pending, s.Pending)
					require.InDelta(t, exp.NodeHours, s.NodeHours, 1e-6)
					require.Equal(t, int64(len(exp.RunTimesMS)), s.RunTime.Count())
				})
			}
			ends, err := repo.CompletedSince(ctx, 0)
			require.NoError(t, err)
			require.Len(t, ends, int(testgen.Expect(plans, nil).Completed))
		})

		t.Run("reset clears every record", func(t *testing.T) {
			repo := adapters.NewJobRepository(db)
			require.NoError(t, db.InTx(ctx, func(tx *sql.Tx) error { return repo.ResetTx(ctx, tx) }))
			jobs, err := repo.Jobs(ctx)
			require.NoError(t, err)
			require.Empty(t, jobs)
		})
	})
}
