package ports_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/cosmic-horizons/fleet/libs/auth"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	"github.com/cosmic-horizons/fleet/libs/telemetry"
	jobpb "github.com/cosmic-horizons/fleet/proto/fleet/job/v1"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/adapters/store"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/app/apptest"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/domain"
	"github.com/cosmic-horizons/fleet/services/job-orchestrator/internal/ports"
)

// BenchmarkSubmitJob measures the request path of SubmitJob: a bearer
// token checked by the auth interceptor, the handler, the use case and the
// group commit into a real database (SQLite, and PostgreSQL when
// DATABASE_URL_POSTGRES is set), over gRPC in process (bufconn). No
// reconciler runs, so the figures are the submission alone. cpu-ns/op is
// the CPU time of the process (client and server, user and system) per
// call: on a shared machine it is steadier than ns/op. "serial" is
// one client (ns/op and allocs/op are those of one call), "clients50" is
// 50 concurrent clients (submits/s is the throughput).
func BenchmarkSubmitJob(b *testing.B) {
	for _, d := range sqlstoretest.Databases(b) {
		b.Run(d.Name, func(b *testing.B) {
			client := newSubmitEnv(b, d)
			ctx := asUser(b, "alice")
			var n atomic.Int64
			submit := func(b *testing.B) bool {
				i := n.Add(1)
				res, err := client.SubmitJob(ctx, validRequest(fmt.Sprintf("bench-%d", i)))
				if err != nil {
					b.Error(err)
					return false
				}
				if res.GetReplayed() || res.GetJob().GetJobId() == "" {
					b.Errorf("submit %d: got %v", i, res)
					return false
				}
				return true
			}
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				cpu := processCPU(b)
				for b.Loop() {
					if !submit(b) {
						return
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "submits/s")
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			})
			b.Run("clients50", func(b *testing.B) {
				b.ReportAllocs()
				b.SetParallelism(25) // 50 goroutines on 2 CPUs
				cpu := processCPU(b)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if !submit(b) {
							return
						}
					}
				})
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "submits/s")
				b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
			})
		})
	}
}

func newSubmitEnv(b *testing.B, d sqlstoretest.NamedDB) jobpb.JobServiceClient {
	b.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	db := d.Open(b)
	if err := store.Migrate(ctx, db); err != nil {
		b.Fatal(err)
	}
	codec, err := events.NewCodec()
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.New(db, codec, store.Config{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := app.DefaultConfig()
	cfg.PageTokenKey = telemetry.Secret("page-token-key-page-token-key")
	a, err := app.New(cfg, app.Deps{Repo: st, Scheduler: apptest.NewFakeScheduler(), Catalogue: domain.DefaultCatalogue(), Logger: logger})
	if err != nil {
		b.Fatal(err)
	}
	acfg := auth.DefaultConfig()
	acfg.HS256Secret = secret
	v, err := auth.NewVerifier(ctx, acfg, nil, logger)
	if err != nil {
		b.Fatal(err)
	}
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(auth.NewInterceptors(v, logger).ServerOptions()...)
	jobpb.RegisterJobServiceServer(srv, ports.NewJobServer(a, logger))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	return jobpb.NewJobServiceClient(conn)
}

// processCPU is the CPU time the process used so far, in nanoseconds.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
