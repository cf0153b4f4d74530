package service_test

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cosmic-horizons/fleet/libs/service/servicetest"
	healthpb "github.com/cosmic-horizons/fleet/proto/fleet/health/v1"
)

func TestBinaryServesFleetStatusOverGRPCAndHTTP(t *testing.T) {
	t.Parallel()
	svc := startHealthServer(t)
	p := servicetest.RunBinary(t, "../../cmd/health-monitor", map[string]string{
		"HEALTH_INTERVAL": "200ms", "HEALTH_PROBE_TIMEOUT": "150ms", "HEALTH_CANARY_ENABLED": "false",
		"HEALTH_SERVICES": "orchestrator=" + svc.Addr,
		"KAFKA_BROKERS":   "", "AMQP_URL": "", "DATABASE_URLS": "",
	})
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	client := healthpb.NewHealthMonitorServiceClient(conn)
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		resp, err := client.GetFleetStatus(ctx, &healthpb.GetFleetStatusRequest{})
		return err == nil && resp.GetStatus().GetOverall() == healthpb.HealthStatus_HEALTH_STATUS_HEALTHY &&
			len(resp.GetStatus().GetComponents()) == 1 && resp.GetStatus().GetComponents()[0].GetId() == "service:orchestrator"
	}, 10*time.Second, 50*time.Millisecond)

	resp, err := http.Get("http://" + p.HTTPAddr + "/status")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Contains(t, string(body), "Fleet status")
	p.Terminate(t)
}
