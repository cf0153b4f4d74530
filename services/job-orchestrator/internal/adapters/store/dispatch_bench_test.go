package store_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
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

// reconcilerBench is a reconciler over the real store s of one database,
// with an in-memory scheduler that answers at once.
type reconcilerBench struct {
	s     *store.Store
	sched *apptest.BulkFakeScheduler
	rec   *app.Reconciler
	ctx   context.Context
	jobs  int // jobs created so far
}

func newReconcilerBench(b *testing.B, d sqlstoretest.NamedDB) *reconcilerBench {
	b.Helper()
	s := newStore(b, d.Open(b), store.Config{})
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("0123456789abcdef0123456789abcdef")
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sched := apptest.NewBulkFakeScheduler()
	a, err := app.New(cfg, app.Deps{Repo: s, Scheduler: sched, Catalogue: domain.DefaultCatalogue(), Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	rec, err := app.NewReconciler(a, app.DefaultReconcilerConfig(), logger)
	if err != nil {
		b.Fatal(err)
	}
	return &reconcilerBench{s: s, sched: sched, rec: rec, ctx: context.Background()}
}

// submit creates n SUBMITTED jobs.
func (r *reconcilerBench) submit(b *testing.B, n int) {
	b.Helper()
	for range n {
		id := fmt.Sprintf("job-%d", r.jobs)
		r.jobs++
		if err := r.s.Create(r.ctx, newJob(id, "alice", id, domain.SystemFrontera, time.Now()), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// pass makes one pass, which must not fail.
func (r *reconcilerBench) pass(b *testing.B) app.PassResult {
	b.Helper()
	res := r.rec.Pass(r.ctx)
	if res.Errors > 0 {
		b.Fatalf("pass: %+v", res)
	}
	return res
}

// dispatch makes passes until they dispatched n jobs.
func (r *reconcilerBench) dispatch(b *testing.B, n int) {
	b.Helper()
	for done := 0; done < n; {
		done += r.pass(b).Dispatched
	}
}

// measure runs f b.N times, timing only f, and reports jobs/s and the
// process's CPU time per job, f handling perIteration jobs.
func measure(b *testing.B, perIteration int, prepare, f func()) {
	b.Helper()
	var wall, cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		prepare()
		b.StartTimer()
		start, cpu0 := time.Now(), processCPU(b)
		f()
		wall += time.Since(start)
		cpu += processCPU(b) - cpu0
	}
	b.StopTimer()
	jobs := b.N * perIteration
	b.ReportMetric(float64(jobs)/wall.Seconds(), "jobs/s")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(jobs), "cpu-ms/job")
}

// BenchmarkReconcilerDispatch measures the reconciler's side of dispatch
// on the real store: passes over a backlog of dispatchBacklog SUBMITTED
// jobs (behind the QUEUED jobs of the iterations before, which every pass
// also polls) until all are QUEUED. It prints jobs/s (SUBMITTED→QUEUED)
// and the CPU time of the process per job.
func BenchmarkReconcilerDispatch(b *testing.B) {
	const dispatchBacklog = 2000
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			r := newReconcilerBench(b, d)
			measure(b, dispatchBacklog, func() { r.submit(b, dispatchBacklog) },
				func() { r.dispatch(b, dispatchBacklog) })
		})
	}
}

// BenchmarkReconcilerRecord measures the reconciler's side of recording
// ends: recordBacklog QUEUED jobs that the scheduler reports COMPLETED
// all at once, passes until every one is recorded (QUEUED→RUNNING→
// COMPLETED, with their events). It prints jobs/s and the CPU time of the
// process per job.
func BenchmarkReconcilerRecord(b *testing.B) {
	const recordBacklog = 2000
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			r := newReconcilerBench(b, d)
			exit := int32(0)
			measure(b, recordBacklog, func() {
				first := r.jobs
				r.submit(b, recordBacklog)
				r.dispatch(b, recordBacklog)
				// The fake scheduler numbers its jobs from 1 in submission order.
				for k := first + 1; k <= r.jobs; k++ {
					r.sched.Set(strconv.Itoa(k), app.SchedulerStatus{Phase: app.PhaseCompleted, State: "COMPLETED", ExitCode: &exit})
				}
			}, func() {
				for !r.idle(b) {
					r.pass(b)
				}
			})
		})
	}
}

// idle tells whether no job is QUEUED or RUNNING any more.
func (r *reconcilerBench) idle(b *testing.B) bool {
	vs, err := r.s.ListActiveVersions(r.ctx, 1, domain.StatusQueued, domain.StatusRunning)
	if err != nil {
		b.Fatal(err)
	}
	return len(vs) == 0
}

// BenchmarkListActiveVersions measures the reconciler's listing of the
// jobs it polls (ListActiveVersions, Batch 500, QUEUED and RUNNING) over
// activeJobs QUEUED jobs, the read every pass makes before it asks the
// scheduler for their status.
func BenchmarkListActiveVersions(b *testing.B) {
	const activeJobs = 5000
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			r := newReconcilerBench(b, d)
			r.submit(b, activeJobs)
			r.dispatch(b, activeJobs)
			batch := app.DefaultReconcilerConfig().Batch
			b.ResetTimer()
			for range b.N {
				vs, err := r.s.ListActiveVersions(r.ctx, batch, domain.StatusQueued, domain.StatusRunning)
				if err != nil || len(vs) != batch {
					b.Fatalf("list: %d versions, %v", len(vs), err)
				}
			}
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
