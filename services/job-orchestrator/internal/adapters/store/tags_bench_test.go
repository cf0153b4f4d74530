package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// BenchmarkListByTag lists the 50 newest jobs of one sweep (a tag) among
// 5,000 jobs of one user in 100 sweeps, each job also tagged with its
// point: the work behind `chctl jobs list -tag sweep:NAME`.
func BenchmarkListByTag(b *testing.B) {
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			ctx := context.Background()
			db := d.Open(b)
			require.NoError(b, store.Migrate(ctx, db))
			codec, err := events.NewCodec()
			require.NoError(b, err)
			s, err := store.New(db, codec, store.Config{})
			require.NoError(b, err)
			const sweeps, perSweep = 100, 50
			for i := range sweeps * perSweep {
				j := newJob(fmt.Sprintf("job-%05d", i), "alice", fmt.Sprintf("k-%d", i), domain.SystemFrontera, t0.Add(time.Duration(i)*time.Millisecond))
				j.Spec.Tags = []string{fmt.Sprintf("sweep:s%d", i%sweeps), fmt.Sprintf("point=%d", i/sweeps)}
				require.NoError(b, s.Create(ctx, j, nil))
			}
			for _, q := range []struct {
				name string
				tags []string
				want int
			}{
				{"no tag (baseline)", nil, 51},
				{"one tag", []string{"sweep:s42"}, perSweep},
				{"two tags", []string{"sweep:s42", "point=7"}, 1},
			} {
				b.Run(q.name, func(b *testing.B) {
					for b.Loop() {
						jobs, err := s.List(ctx, app.ListQuery{Owner: "alice", Tags: q.tags, Limit: 51})
						if err != nil || len(jobs) != q.want {
							b.Fatalf("%d jobs, %v", len(jobs), err)
						}
					}
				})
			}
		})
	}
}
