package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
)

// BenchmarkReconcilerDispatch measures the reconciler's side of dispatch
// on the real store: passes over a backlog of dispatchBacklog SUBMITTED
// jobs (behind the QUEUED jobs of the iterations before, which every pass
// also polls) until all are QUEUED, with an in-memory scheduler that
// answers at once. It prints jobs/s (SUBMITTED→QUEUED) and the CPU time
// of the process per job.
func BenchmarkReconcilerDispatch(b *testing.B) {
	const dispatchBacklog = 2000
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			s := newStore(b, db, store.Config{})
			cfg := app.DefaultConfig()
			cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			a, err := app.New(cfg, app.Deps{Repo: s, Scheduler: apptest.NewBulkFakeScheduler(),
				Catalogue: domain.DefaultCatalogue(), Logger: logger})
			if err != nil {
				b.Fatal(err)
			}
			rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), logger)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var (
				wall time.Duration
				cpu  time.Duration
				jobs int
			)
			b.ResetTimer()
			for i := range b.N {
				b.StopTimer()
				for k := range dispatchBacklog {
					id := fmt.Sprintf("job-%d-%d", i, k)
					j := newJob(id, "alice", id, domain.SystemFrontera, time.Now())
					if err := s.Create(ctx, j, nil); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				start, cpu0 := time.Now(), processCPU(b)
				for n := 0; n < dispatchBacklog; {
					res := rec.Pass(ctx)
					if res.Errors > 0 {
						b.Fatalf("pass: %+v", res)
					}
					n += res.Dispatched
				}
				wall += time.Since(start)
				cpu += processCPU(b) - cpu0
				jobs += dispatchBacklog
			}
			b.StopTimer()
			b.ReportMetric(float64(jobs)/wall.Seconds(), "jobs/s")
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(jobs), "cpu-ms/job")
		})
	}
}

// processCPU is the user and system CPU time of this process so far (the
// PostgreSQL server's is not in it; SQLite's is).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkListActiveVersions measures the reconciler's listing of the
// jobs it polls (ListActiveVersions, Batch 500, QUEUED and RUNNING) over
// activeJobs QUEUED jobs, the read every pass makes before it asks the
// scheduler for their status.
func BenchmarkListActiveVersions(b *testing.B) {
	const activeJobs = 5000
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			db := d.Open(b)
			s := newStore(b, db, store.Config{})
			cfg := app.DefaultConfig()
			cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			a, err := app.New(cfg, app.Deps{Repo: s, Scheduler: apptest.NewBulkFakeScheduler(),
				Catalogue: domain.DefaultCatalogue(), Logger: logger})
			if err != nil {
				b.Fatal(err)
			}
			rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), logger)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for k := range activeJobs {
				id := fmt.Sprintf("job-%d", k)
				if err := s.Create(ctx, newJob(id, "alice", id, domain.SystemFrontera, time.Now()), nil); err != nil {
					b.Fatal(err)
				}
			}
			for n := 0; n < activeJobs; {
				res := rec.Pass(ctx)
				if res.Errors > 0 {
					b.Fatalf("pass: %+v", res)
				}
				n += res.Dispatched
			}
			batch := app.DefaultReconcilerConfig().Batch
			b.ResetTimer()
			for range b.N {
				vs, err := s.ListActiveVersions(ctx, batch, domain.StatusQueued, domain.StatusRunning)
				if err != nil || len(vs) != batch {
					b.Fatalf("list: %d versions, %v", len(vs), err)
				}
			}
		})
	}
}
