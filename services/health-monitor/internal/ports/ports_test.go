package ports_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/app"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/domain"
	"github.com/cosmic-horizons/fleet/services/health-monitor/internal/ports"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sample(cycle uint64, svc domain.Status) domain.FleetStatus {
	s := domain.FleetStatus{
		Cycle: cycle, Generated: t0.Add(time.Duration(cycle) * time.Second), CycleCPU: 3 * time.Millisecond,
		Components: []domain.Component{
			{ID: "kafka:cluster", Type: domain.TypeBroker, Status: domain.StatusHealthy, Checked: t0, Latency: time.Millisecond},
			{ID: "service:orch", Type: domain.TypeService, Status: svc, Detail: "x", Checked: t0},
			{ID: "canary:kafka:c", Type: domain.TypeCanary, Status: domain.StatusHealthy, Checked: t0},
		},
		Lags:     []domain.GroupLag{{Group: "g", Topic: "t", Lag: 42}},
		Canaries: []domain.CanaryLatency{{CanaryID: "kafka:c", Latency: 2 * time.Millisecond, MeasuredAt: t0, P50: time.Millisecond, P99: 5 * time.Millisecond, Samples: 3}},
	}
	if svc.Bad() {
		s.OpenAlerts = []domain.Alert{{ID: "a1", ComponentID: "service:orch", Severity: domain.SeverityCritical, Message: "down", RaisedAt: t0}}
	}
	s.Normalize()
	return s
}

func TestToProtoMapsEveryField(t *testing.T) {
	t.Parallel()
	p := ports.ToProto(sample(7, domain.StatusUnhealthy))
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_UNHEALTHY, p.GetOverall())
	require.Len(t, p.GetComponents(), 3)
	byID := map[string]*healthpb.Component{}
	for _, c := range p.GetComponents() {
		byID[c.GetId()] = c
	}
	require.Equal(t, healthpb.ComponentType_COMPONENT_TYPE_CANARY, byID["canary:kafka:c"].GetType())
	require.Equal(t, healthpb.ComponentType_COMPONENT_TYPE_SERVICE, byID["service:orch"].GetType())
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_UNHEALTHY, byID["service:orch"].GetStatus())
	require.Equal(t, time.Millisecond, byID["kafka:cluster"].GetLatency().AsDuration())
	require.Equal(t, int64(42), p.GetConsumerGroupLags()[0].GetLag())
	require.Equal(t, 2*time.Millisecond, p.GetCanaryLatencies()[0].GetLatency().AsDuration())
	require.Equal(t, healthpb.Severity_SEVERITY_CRITICAL, p.GetOpenAlerts()[0].GetSeverity())
	require.Equal(t, t0.Add(7*time.Second), p.GetGeneratedAt().AsTime())

	empty := ports.ToProto(domain.FleetStatus{Overall: domain.StatusUnknown})
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_UNKNOWN, empty.GetOverall())
	require.Nil(t, empty.GetGeneratedAt())
}

func startGRPC(t *testing.T, hub *app.Hub) healthpb.HealthMonitorServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	healthpb.RegisterHealthMonitorServiceServer(srv, ports.NewGRPCServer(hub))
	go func() { _ = srv.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Stop()
	})
	return healthpb.NewHealthMonitorServiceClient(conn)
}

func TestGRPCGetAndWatchFleetStatus(t *testing.T) {
	t.Parallel()
	hub := app.NewHub()
	client := startGRPC(t, hub)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	got, err := client.GetFleetStatus(ctx, &healthpb.GetFleetStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_UNKNOWN, got.GetStatus().GetOverall())

	hub.Publish(sample(1, domain.StatusHealthy))
	stream, err := client.WatchFleetStatus(ctx, &healthpb.WatchFleetStatusRequest{MinInterval: durationpb.New(time.Millisecond)})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_HEALTHY, first.GetStatus().GetOverall(), "current status first")

	hub.Publish(sample(2, domain.StatusUnhealthy))
	second, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthStatus_HEALTH_STATUS_UNHEALTHY, second.GetStatus().GetOverall())
	require.Len(t, second.GetStatus().GetOpenAlerts(), 1)

	got, err = client.GetFleetStatus(ctx, &healthpb.GetFleetStatusRequest{})
	require.NoError(t, err)
	require.Equal(t, "service:orch", got.GetStatus().GetOpenAlerts()[0].GetComponentId())
}

func TestGRPCWatchRejectsBadMinInterval(t *testing.T) {
	t.Parallel()
	client := startGRPC(t, app.NewHub())
	tests := []struct {
		name string
		d    time.Duration
	}{
		{name: "negative", d: -time.Second},
		{name: "above an hour", d: 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stream, err := client.WatchFleetStatus(t.Context(), &healthpb.WatchFleetStatusRequest{MinInterval: durationpb.New(tt.d)})
			require.NoError(t, err)
			_, err = stream.Recv()
			require.Equal(t, codes.InvalidArgument, status.Code(err))
		})
	}
}

func TestStatusEventsStreamCurrentThenEachNewStatus(t *testing.T) {
	t.Parallel()
	hub := app.NewHub()
	hub.Publish(sample(1, domain.StatusHealthy))
	mux := http.NewServeMux()
	ports.NewStatusHandler(hub, slog.New(slog.NewJSONHandler(io.Discard, nil))).Register(mux.Handle)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	page, err := http.Get(srv.URL + "/status")
	require.NoError(t, err)
	body, _ := io.ReadAll(page.Body)
	_ = page.Body.Close()
	require.Equal(t, http.StatusOK, page.StatusCode)
	require.Contains(t, string(body), "EventSource")

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/status/events", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	r := bufio.NewReader(resp.Body)

	first := readEvent(t, r)
	require.Equal(t, "HEALTHY", first.Overall)
	require.Equal(t, uint64(1), first.Cycle)
	require.Equal(t, 1.0, first.Canaries[0].P50MS)
	require.Equal(t, 5.0, first.Canaries[0].P99MS)

	hub.Publish(sample(2, domain.StatusUnhealthy))
	second := readEvent(t, r)
	require.Equal(t, "UNHEALTHY", second.Overall)
	require.Len(t, second.OpenAlerts, 1)
	require.Equal(t, int64(42), second.Lags[0].Lag)
}

func readEvent(t *testing.T, r *bufio.Reader) ports.StatusView {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var v ports.StatusView
			require.NoError(t, json.Unmarshal([]byte(data), &v))
			return v
		}
	}
}
