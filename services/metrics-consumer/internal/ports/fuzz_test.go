package ports_test

import (
	"context"
	"database/sql"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/cosmic-horizons/fleet/libs/bus"
	"github.com/cosmic-horizons/fleet/libs/events"
	"github.com/cosmic-horizons/fleet/libs/inbox"
	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	"github.com/cosmic-horizons/fleet/libs/sqlstore/sqlstoretest"
	metricspb "github.com/cosmic-horizons/fleet/proto/fleet/metrics/v1"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/adapters"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/app"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/ports"
	"github.com/cosmic-horizons/fleet/services/metrics-consumer/internal/testgen"
)

var fuzzBase = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// fuzzMetrics fuzzes one MetricsService method through the runtime's real
// interceptors and the JWT interceptors, over a SQLite store holding 40
// generated jobs, some of them servicefuzz.FuzzUser's.
func fuzzMetrics(f *testing.F, method string, seeds ...*metricspb.TimeWindow) (*servicefuzz.Server, protoreflect.MethodDescriptor, servicefuzz.State) {
	ctx := context.Background()
	db := sqlstoretest.OpenURL(f, "sqlite://"+filepath.Join(f.TempDir(), "metrics.db"))
	require.NoError(f, inbox.Migrate(ctx, db))
	require.NoError(f, adapters.Migrate(ctx, db))
	jobs := adapters.NewJobRepository(db)
	codec, err := events.NewCodec()
	require.NoError(f, err)
	ib := inbox.New(db, "metrics-consumer", slog.New(slog.DiscardHandler), nil)
	ingest := app.NewIngest(inbox.NewUnitOfWork(ib, func(tx *sql.Tx, msgs []*bus.Message) app.JobWriter { return jobs.Bind(tx, msgs) }), codec, nil)
	plans := testgen.Plans(7, 40, fuzzBase)
	for i := range plans {
		if i%3 == 0 {
			plans[i].UserID = servicefuzz.FuzzUser
		}
	}
	evs, err := testgen.Stream(plans)
	require.NoError(f, err)
	for i, ev := range evs {
		msg, err := codec.Message(ev)
		require.NoError(f, err)
		msg.Offset = int64(i)
		require.NoError(f, ingest.Handle(ctx, msg))
	}
	srv := servicefuzz.InProcess(f, "metrics-consumer", func(s *grpc.Server, logger *slog.Logger) {
		metricspb.RegisterMetricsServiceServer(s, ports.NewMetricsServer(app.NewQueries(jobs), logger))
	})
	md := servicefuzz.Methods(f, metricspb.File_fleet_metrics_v1_metrics_proto.Services().Get(0).FullName()).ByName(protoreflect.Name(method))
	require.NotNil(f, md, method)
	return srv, md, func(t testing.TB) map[string]int64 { return sqlstoretest.RowCounts(t, db) }
}

func window(from, to time.Time) *metricspb.TimeWindow {
	return &metricspb.TimeWindow{Start: timestamppb.New(from), End: timestamppb.New(to)}
}

var (
	wholeWindow = window(fuzzBase.Add(-time.Hour), fuzzBase.Add(48*time.Hour))
	badWindow   = &metricspb.TimeWindow{Start: &timestamppb.Timestamp{Seconds: 1 << 40}, End: &timestamppb.Timestamp{Nanos: -1}}
)

func FuzzMetricsGetJobMetrics(f *testing.F) {
	srv, md, state := fuzzMetrics(f, "GetJobMetrics")
	srv.Fuzz(f, md, state,
		&metricspb.GetJobMetricsRequest{Window: wholeWindow},
		&metricspb.GetJobMetricsRequest{Window: wholeWindow, JobId: "job-7-000000", Agent: 2},
		&metricspb.GetJobMetricsRequest{Window: badWindow, Agent: 99},
	)
}

func FuzzMetricsGetSystemStats(f *testing.F) {
	srv, md, state := fuzzMetrics(f, "GetSystemStats")
	srv.Fuzz(f, md, state,
		&metricspb.GetSystemStatsRequest{Window: wholeWindow, TaccSystem: 1},
		&metricspb.GetSystemStatsRequest{Window: badWindow, TaccSystem: 77},
	)
}

func FuzzMetricsGetUserUsage(f *testing.F) {
	srv, md, state := fuzzMetrics(f, "GetUserUsage")
	srv.Fuzz(f, md, state,
		&metricspb.GetUserUsageRequest{Window: wholeWindow, UserId: servicefuzz.FuzzUser},
		&metricspb.GetUserUsageRequest{Window: wholeWindow, UserId: servicefuzz.FuzzOtherUser},
		&metricspb.GetUserUsageRequest{Window: badWindow},
	)
}

// TestEveryMetricsMethodIsFuzzed fails when MetricsService gains a method
// without a fuzz target above.
func TestEveryMetricsMethodIsFuzzed(t *testing.T) {
	fuzzed := map[protoreflect.Name]bool{"GetJobMetrics": true, "GetSystemStats": true, "GetUserUsage": true}
	ms := servicefuzz.Methods(t, metricspb.File_fleet_metrics_v1_metrics_proto.Services().Get(0).FullName())
	for i := range ms.Len() {
		require.True(t, fuzzed[ms.Get(i).Name()], "no fuzz target for %s", ms.Get(i).FullName())
	}
}
