package ports_test

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/cosmic-horizons/fleet/libs/service/servicefuzz"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/ports"
)

// fuzzHealth fuzzes one HealthMonitorService method through the runtime's
// real interceptors (the health-monitor has no JWT interceptors) over a hub
// holding a status. The service stores nothing: the state is the hub's
// published status cycle, which no call may move.
func fuzzHealth(f *testing.F, method string) (*servicefuzz.Server, protoreflect.MethodDescriptor, servicefuzz.State) {
	hub := app.NewHub()
	hub.Publish(sample(3, domain.StatusDegraded))
	srv := servicefuzz.InProcess(f, "health-monitor", func(s *grpc.Server, _ *slog.Logger) {
		healthpb.RegisterHealthMonitorServiceServer(s, ports.NewGRPCServer(hub))
	}, servicefuzz.WithoutAuth())
	md := servicefuzz.Methods(f, healthpb.File_fleet_health_v1_health_proto.Services().Get(0).FullName()).ByName(protoreflect.Name(method))
	require.NotNil(f, md, method)
	return srv, md, func(testing.TB) map[string]int64 {
		st, _ := hub.Current()
		return map[string]int64{"cycle": int64(st.Cycle)}
	}
}

func FuzzHealthGetFleetStatus(f *testing.F) {
	srv, md, state := fuzzHealth(f, "GetFleetStatus")
	srv.Fuzz(f, md, state)
}

func FuzzHealthWatchFleetStatus(f *testing.F) {
	srv, md, state := fuzzHealth(f, "WatchFleetStatus")
	srv.Fuzz(f, md, state,
		&healthpb.WatchFleetStatusRequest{MinInterval: durationpb.New(0)},
		&healthpb.WatchFleetStatusRequest{MinInterval: &durationpb.Duration{Seconds: -1}},
		&healthpb.WatchFleetStatusRequest{MinInterval: &durationpb.Duration{Seconds: 1 << 40, Nanos: -5}},
	)
}

// TestEveryHealthMethodIsFuzzed fails when HealthMonitorService gains a
// method without a fuzz target above.
func TestEveryHealthMethodIsFuzzed(t *testing.T) {
	fuzzed := map[protoreflect.Name]bool{"GetFleetStatus": true, "WatchFleetStatus": true}
	ms := servicefuzz.Methods(t, healthpb.File_fleet_health_v1_health_proto.Services().Get(0).FullName())
	for i := range ms.Len() {
		require.True(t, fuzzed[ms.Get(i).Name()], "no fuzz target for %s", ms.Get(i).FullName())
	}
}
