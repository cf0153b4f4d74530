package store_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// BenchmarkCreateConcurrent measures Create from 50 goroutines, each with
// its own idempotency key: the store side of SubmitJob.
func BenchmarkCreateConcurrent(b *testing.B) {
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			s := newStore(b, db, store.Config{})
			var n atomic.Int64
			b.SetParallelism(25) // 50 goroutines on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					j := newJob(fmt.Sprintf("job-%d", i), "alice", fmt.Sprintf("key-%d", i), domain.SystemFrontera, t0)
					if err := s.Create(context.Background(), j, lifecycle(b, j, 1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
